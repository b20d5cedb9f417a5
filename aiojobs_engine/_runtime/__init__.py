"""The engine's runtime components, one module each; ``_runtime.Runtime`` composes them."""
