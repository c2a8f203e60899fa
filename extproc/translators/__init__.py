"""Pure, sans-IO translators: bytes and dicts in, bytes and dicts out. No Envoy, no I/O."""
