"""Listen to Interpret (L2I, Parekh et al., NeurIPS 2022): a post-hoc interpreter that explains
a frozen audio model with the components of a pre-learned sparse-NMF dictionary and plays them
back as audio. See docs/l2i.md."""

from robustmer.explain.l2i.clips import (
    Clips,
    InputPath,
    clip_tensors,
    excerpt_waves,
    model_input,
    resample,
    sample_frames,
)
from robustmer.explain.l2i.dictionary import Dictionary, fit_or_load
from robustmer.explain.l2i.interpreter import (
    POOLINGS,
    FeatureHooks,
    Interpreter,
    Psi,
    Theta,
    check_layers,
    last_conv_blocks,
    layer_candidates,
    relevance,
    select,
)
from robustmer.explain.l2i.nmf import NMFResult, normalise_columns, objective, sparse_nmf
from robustmer.explain.l2i.pipeline import (
    TAUS,
    InterpreterConfig,
    explain_clip,
    faithfulness,
    faithfulness_summary,
    fidelity_loss,
    fidelity_table,
    interpret_batches,
)
from robustmer.explain.l2i.signal import log_magnitude, overlap_add, resynthesize, soft_masks

__all__ = [
    "POOLINGS", "TAUS", "Clips", "Dictionary", "FeatureHooks", "InputPath", "Interpreter",
    "InterpreterConfig", "NMFResult", "Psi", "Theta", "check_layers", "clip_tensors",
    "excerpt_waves", "explain_clip", "faithfulness", "faithfulness_summary", "fidelity_loss",
    "fidelity_table", "fit_or_load", "interpret_batches", "last_conv_blocks", "layer_candidates",
    "log_magnitude", "model_input", "normalise_columns", "objective", "overlap_add", "relevance",
    "resample", "resynthesize", "sample_frames", "select", "soft_masks", "sparse_nmf",
]
