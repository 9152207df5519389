"""Print the JSON Schema of site configs (for editors: completion and checking)."""

from __future__ import annotations

import argparse
import json

from symtwin.config.schema import SiteConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--indent", type=int, default=2, help="JSON indentation (default 2)")


def run(args: argparse.Namespace) -> int:
    from twin.catalog import UNIT_MODELS

    schema = SiteConfig.model_json_schema(by_alias=True)
    # Units take their model's parameters as extra keys: describe them per model for editors.
    schema["$comment"] = "Unit parameters per model: " + "; ".join(
        f"{m.name}: {', '.join(f'{p.name} [{p.unit}]' for p in m.params)}" for m in UNIT_MODELS.values()
    )
    print(json.dumps(schema, indent=args.indent))
    return 0
