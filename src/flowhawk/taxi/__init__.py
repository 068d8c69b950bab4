"""NYC taxi trip files: the course's column layouts and a deterministic synthetic month maker."""

from flowhawk.taxi.layout import LAYOUTS, TaxiLayout, layout_for

__all__ = ["LAYOUTS", "TaxiLayout", "layout_for"]
