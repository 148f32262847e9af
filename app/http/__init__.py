"""The inbound HTTP edge, outermost layer first:

server (uvicorn protocol: head deadline and size, 408/431) → access_log (request id, access
line, last-resort 500) → limits (414, Content-Type) → paths (%2F/%25 kept encoded) → fast_path
(compiled routes for the hot operations) → Connexion [auth's body buffer → X-Matrix (auth) and
the per-origin rate limit (ratelimit) → the contract's validation → the handler]. Every error
on the way is rendered once, as Matrix JSON (errors); scope holds what the layers share.
"""
