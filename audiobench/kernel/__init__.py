"""The kernel: what every layer may use and that imports nothing of audiobench above it: errors,
content hashes and atomic writes (the cache), the epoch loop, statistics, batched NMF, the torchaudio
shim, the allocator and the crash-test kill points."""
