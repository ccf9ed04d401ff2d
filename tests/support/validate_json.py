"""Validates a JSON document (stdin) against a JSON Schema file (argv[1]) with the
jsonschema package, the validator the schema's own draft names. Prints every error with its
path; exits 1 when there is one, 2 when the validator itself is missing."""
import json
import sys

try:
    import jsonschema
except ImportError:
    print("jsonschema is missing (pip install jsonschema)")
    sys.exit(2)

with open(sys.argv[1]) as f:
    schema = json.load(f)
doc = json.load(sys.stdin)
cls = jsonschema.validators.validator_for(schema)
cls.check_schema(schema)
errors = sorted(cls(schema).iter_errors(doc), key=lambda e: list(e.absolute_path))
for e in errors[:20]:
    print("/".join(str(p) for p in e.absolute_path) or "<root>", ":", e.message[:300])
sys.exit(1 if errors else 0)
