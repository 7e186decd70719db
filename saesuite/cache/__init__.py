"""The activation cache: ``format`` (the file names and the manifest: the contract), ``writer``
(filling it from a backbone, shard by shard), ``reader`` (:class:`ActivationCache`), ``verify``
(the checks), ``loader`` (the images of a shard), ``planted`` (synthetic caches) and ``bench``."""
