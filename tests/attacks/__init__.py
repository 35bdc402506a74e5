"""One test per attack of docs/threat-model.md, each on a sealed Go-written fixture."""
