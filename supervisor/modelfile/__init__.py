"""Modelfiles: the pure parser/serializer (``parser``), the client-side create request (``request``)
and the HTTP client that uploads blobs and streams ``/api/create`` for ``llamasup create`` (``client``)."""
