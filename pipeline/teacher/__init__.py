"""The teacher, of one of eight kinds (``teacher.kind``): trained here on the labelled pool (train),
built from published weights (cirtorch, torchvision, efficientnet-lite), or one you can only query
(mlflow, kserve-v2, command, precomputed). Every kind but precomputed descriptors (looked up by name,
never counted) is reached the same way: as a counted, budgeted black box whose answers are stored."""
