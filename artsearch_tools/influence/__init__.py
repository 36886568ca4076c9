"""Influence data tools: the importers (DBpedia, PainterPalette) and the FalkorDB stand-in server."""
