"""OGC API – Features, Part 1: Core, without a web framework: params (the parameter rules and
media types), documents (landing page, conformance, collections, links), html and openapi."""
