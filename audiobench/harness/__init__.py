"""The run path: the shared stage and one cell (:mod:`.session`), executors (:mod:`.executors`), the
end of a run and its after-cell stages (:mod:`.finish`), ``audiobench run`` (:mod:`.runner`) and
``audiobench score`` (:mod:`.scoring`)."""
