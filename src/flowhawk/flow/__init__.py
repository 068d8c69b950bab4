"""Flows: the model, loading YAML with line-accurate validation, inputs, JSON Schema."""

from flowhawk.flow.inputs import InputError, resolve_inputs, secret_inputs
from flowhawk.flow.loader import (
    FlowValidationError,
    Problem,
    load_flow,
    load_flow_file,
    validate_source,
)
from flowhawk.flow.model import Flow, Input, ScheduleTrigger

__all__ = [
    "Flow",
    "FlowValidationError",
    "Input",
    "InputError",
    "Problem",
    "ScheduleTrigger",
    "load_flow",
    "load_flow_file",
    "resolve_inputs",
    "secret_inputs",
    "validate_source",
]
