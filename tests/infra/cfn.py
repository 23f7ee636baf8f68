"""Queries over synthesised CloudFormation templates (plain dicts)."""
from __future__ import annotations

from collections.abc import Iterator


def resources(template: dict, resource_type: str) -> dict[str, dict]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == resource_type}


def _walk(node) -> Iterator[dict]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def local_refs(node) -> set[str]:
    """Logical ids referenced with Ref or Fn::GetAtt."""
    out = set()
    for d in _walk(node):
        if "Ref" in d:
            out.add(d["Ref"])
        if "Fn::GetAtt" in d:
            out.add(d["Fn::GetAtt"][0])
    return out


def data_refs(node, data_template: dict) -> set[str]:
    """Logical ids of the data stack that `node` (in another stack) references, through weak
    (Fn::GetStackOutput) or strong (Fn::ImportValue) cross-stack references."""
    outputs = data_template.get("Outputs", {})
    by_export = {o["Export"]["Name"]: o for o in outputs.values() if "Export" in o}
    out = set()
    for d in _walk(node):
        if "Fn::GetStackOutput" in d:
            out |= local_refs(outputs[d["Fn::GetStackOutput"]["OutputName"]]["Value"])
        if "Fn::ImportValue" in d and isinstance(d["Fn::ImportValue"], str):
            out |= local_refs(by_export[d["Fn::ImportValue"]]["Value"])
    return out


def function_id(template: dict, handler: str) -> str:
    [fid] = [k for k, v in resources(template, "AWS::Lambda::Function").items() if v["Properties"]["Handler"] == handler]
    return fid


def role_statements(template: dict, function_logical_id: str) -> list[dict]:
    """Every statement of every inline policy attached to the function's role."""
    role = template["Resources"][function_logical_id]["Properties"]["Role"]["Fn::GetAtt"][0]
    statements = []
    for policy in resources(template, "AWS::IAM::Policy").values():
        if {"Ref": role} in policy["Properties"].get("Roles", []):
            statements += policy["Properties"]["PolicyDocument"]["Statement"]
    return statements


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]
