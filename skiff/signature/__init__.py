"""Image signatures and the trust policy (containers/image's ``signature`` package).

    mechanism.py   GnuPG, run as ``gpg`` with one argv builder: sign, verify,
                   import keys into an ephemeral keyring
    simple.py      the "atomic container signature" payload (simple signing)
    sigstore.py    sigstore key pairs (cosign-compatible files), payload
                   signing and verification, the in-memory signature format
    attachments.py sigstore signatures as ``sha256-HEX.sig`` images in a registry
    lookaside.py   registries.d: where a registry's simple signatures live
                   (``file://`` read/write, ``http(s)://`` read)
    hooks.py       wiring lookaside and attachments into the docker transport
    verify.py      one signature against trusted keys, the fetched manifest
                   and the expected identity — in that order
    policy/        policy.json: strict parser, requirements, scope lookup,
                   evaluation (what the copy engine calls)
    signing.py     signers for the copy engine, ``image sign``, standalone
                   sign/verify
    trustconfig.py ``image trust show/set``: read and edit policy.json and
                   registries.d

Paranoia rules (containers/image's): values read from a signature before
it is verified are named ``untrusted_…``; JSON is parsed rejecting
duplicate keys and unknown keys where the format fixes them; a policy that
does not parse is an error, never "accept".
"""
