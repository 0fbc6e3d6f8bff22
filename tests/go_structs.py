"""Python stand-ins for Go values in template tests: a struct with fields and methods, a
``fmt.Stringer``, and a Stringer whose ``String`` method panics."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar


@dataclass
class Person:
    GO_TYPE: ClassVar[str] = "main.Person"

    Name: str = "Ann"
    Age: int = 30
    Tags: list[object] = field(default_factory=lambda: ["a", "b"])
    Boss: object = None
    secret: str = "s"

    def Greet(self, other: str) -> str:
        return f"{self.Name} greets {other}"

    def Fail(self) -> str:
        raise ValueError("it broke")


@dataclass
class Celsius:
    GO_TYPE: ClassVar[str] = "main.Celsius"

    Degrees: float = 21.5

    def go_string(self) -> str:
        return f"{self.Degrees}°C"


@dataclass
class Broken:
    GO_TYPE: ClassVar[str] = "main.Broken"

    def go_string(self) -> str:
        raise RuntimeError("no")
