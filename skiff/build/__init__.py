"""skiff.build: Containerfile builds (what ``buildah bud`` does).

The front half is pure logic:

* ``parser``       — ``parse_containerfile(text, path)`` / ``parse_file(path)``:
                     text → ``Containerfile`` (directives, global ARGs, stages of
                     typed instructions, warnings); ``parse_instruction`` for
                     ONBUILD triggers.
* ``arguments``    — one instruction's joined line → its typed instruction
                     (flags, JSON/shell forms, NAME=VALUE words).
* ``instructions`` — one dataclass per instruction, raw arguments kept;
                     ``parse_mount``, ``expose_ports``, ``parse_duration``.
* ``words``        — ``expand``/``split_words``/``expand_words``: the builder's
                     variable expansion, called at dispatch time.
* ``ignore``       — ``IgnoreMatcher``: .containerignore/.dockerignore rules.

The executor (working containers, RUN, COPY, commit, cache) builds on them.
Nothing is imported here so that importing one submodule stays cheap.
"""
