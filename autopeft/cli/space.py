"""`autopeft space show|sample`: what a search space holds for a model, and what its candidates cost."""

from __future__ import annotations

import argparse
from typing import Any


def _space_and_model(args: argparse.Namespace) -> tuple[Any, Any]:
    from autopeft.adapters.fit import fit_space
    from autopeft.adapters.models import inspect_model, resolve_model
    from autopeft.space.spec import load_spec

    spec = load_spec(args.space)
    info = inspect_model(resolve_model(args.model), _num_labels(args), spec.architecture)
    return fit_space(spec, info.model_type, info.layout), info


def _num_labels(args: argparse.Namespace) -> int:
    """The head the task needs: a GLUE task's, or your own data's, read as a search reads it."""
    import dataclasses

    from autopeft.adapters.models import CAUSAL_LM
    from autopeft.cli.options import data_option_values
    from autopeft.run.options import read_data_options
    from autopeft.training.data import resolve_task
    from autopeft.training.tasks import is_glue_name

    options = read_data_options(data_option_values(args))
    if is_glue_name(args.task):
        if options.task_type == "causal-lm":  # the space for the model as a causal LM
            return CAUSAL_LM
        options = dataclasses.replace(options, task_type=None)  # classification is a GLUE task's own
    return resolve_task(args.task, options, getattr(args, "seed", 0)).num_labels


def show(args: argparse.Namespace) -> int:
    from autopeft.adapters.models import CAUSAL_LM
    from autopeft.space.compiled import compile_space
    from autopeft.space.portfolio import learned_start, model_kind
    from autopeft.space.report import show_text, startup_text

    fitted, info = _space_and_model(args)
    space = compile_space(fitted.spec, info.num_layers)
    causal = _num_labels(args) == CAUSAL_LM
    startup = startup_text(learned_start(args.space, space, causal), model_kind(causal))
    print(show_text(space, info.ref.name, fitted.left_out, startup))
    return 0


def sample(args: argparse.Namespace) -> int:
    from autopeft.adapters.models import CAUSAL_LM, build_from_config, load_config
    from autopeft.logs import quiet_libraries
    from autopeft.training.sample import sample_candidates, sample_text

    quiet_libraries()
    fitted, info = _space_and_model(args)
    spec = fitted.spec
    config = load_config(info.ref)
    num_labels = _num_labels(args)
    if num_labels != CAUSAL_LM:
        config.num_labels = num_labels
    if config.pad_token_id is None:
        config.pad_token_id = 0
    base = build_from_config(config, num_labels == CAUSAL_LM)  # costs do not depend on the weights
    samples = sample_candidates(spec, base, args.n, args.seed, spec.architecture)
    b = spec.budget
    print(f"{args.n} candidates of {spec.source} on {info.ref.name}; memory at batch {b.batch_size}, "
          f"length {b.max_length} ({samples[0].memory_method if samples else '-'})")
    print(sample_text(samples, info.base_params))
    return 0
