"""Image management over the image library and the store (podman's libimage).

Where ``skiff.image`` (references, transports, the copy engine) and
``skiff.storage`` (layers, images) meet. Each entry point takes a
``SystemContext`` and an ``…Options`` dataclass and returns a ``…Report``;
the CLI parses flags, calls one of them and prints the report:

    pull.pull_image(ctx, text, PullOptions)                    -> PullReport
    push.push_image(ctx, image, dest, PushOptions)             -> PushReport
    saveload.save_images(ctx, images, output, SaveOptions)     -> SaveReport
    saveload.load_images(ctx, path, LoadOptions)               -> LoadReport
    importer.import_image(ctx, source, name, ImportOptions)    -> ImportReport

``names`` turns what users type into references (short names, local
names); ``blobhints`` records what copies learn in the blob-info cache.
Modules are imported by their full names so that a command loads only what
it uses; this package imports nothing itself.
"""
