"""The CloudFormation templates in a CDK cloud assembly (cdk.out), and queries over their resources."""
from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Resource:
    stack: str
    logical_id: str
    type: str
    properties: Mapping[str, Any]

    @property
    def name(self) -> str:
        return f"{self.stack}/{self.logical_id}"


class Templates:
    """Every stack's template by stack name (e.g. {"TollgateApi": {...}})."""

    def __init__(self, by_stack: Mapping[str, dict]):
        self.by_stack = dict(by_stack)

    @classmethod
    def from_cdk_out(cls, cdk_out: Path) -> "Templates":
        """Read cdk.out/manifest.json's CloudFormation stack artifacts. Raises FileNotFoundError without a synth."""
        manifest = json.loads((cdk_out / "manifest.json").read_text())
        by_stack = {}
        for artifact in manifest["artifacts"].values():
            if artifact.get("type") == "aws:cloudformation:stack":
                name = artifact["properties"].get("stackName") or artifact["displayName"]
                by_stack[name] = json.loads((cdk_out / artifact["properties"]["templateFile"]).read_text())
        return cls(by_stack)

    def resources(self, *types: str) -> Iterator[Resource]:
        for stack, template in self.by_stack.items():
            for logical_id, body in template.get("Resources", {}).items():
                if not types or body["Type"] in types:
                    yield Resource(stack, logical_id, body["Type"], body.get("Properties", {}))

    def get(self, stack: str, logical_id: str) -> Resource:
        body = self.by_stack[stack]["Resources"][logical_id]
        return Resource(stack, logical_id, body["Type"], body.get("Properties", {}))

    def function(self, construct_id: str) -> Resource | None:
        """The Lambda function of a stacks.functions.TollgateFunction by its construct id (e.g. "Gateway"):
        CDK names it <construct id>Function<hash>."""
        found = [r for r in self.resources("AWS::Lambda::Function") if r.logical_id.startswith(f"{construct_id}Function")]
        return found[0] if found else None


def refs(node: Any) -> set[str]:
    """Logical ids referenced by Ref or Fn::GetAtt anywhere under `node`."""
    out: set[str] = set()
    if isinstance(node, dict):
        if isinstance(node.get("Ref"), str):
            out.add(node["Ref"])
        if "Fn::GetAtt" in node:
            out.add(node["Fn::GetAtt"][0])
        for value in node.values():
            out |= refs(value)
    elif isinstance(node, list):
        for value in node:
            out |= refs(value)
    return out
