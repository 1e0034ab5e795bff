"""The epoch loop of fit, as Keras's torch trainer runs it: callback hooks in Keras's order,
batches from the batch iterator, validation at the end of the epochs `validation_freq` picks,
`stop_training` the only early exit.

`steps_per_execution` (Keras's torch backend refuses values above 1) runs that many batches
between the batch callbacks: `on_train_batch_begin` gets the group's first batch index and
`on_train_batch_end` its last (the final, shorter group included) with the running logs; the
batches, and so the numbers, are the same as with 1.

The loop uses the trainer's public steps only (`train_step`, `test_step`, `reset_metrics`,
`get_metrics_result`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.engine.arrays.checks import BatchSource
from app.engine.callbacks import Callback, CallbackList, LazyLogs
from app.engine.callbacks import state as callback_state
from app.engine.training.batches import BatchIterator
from app.engine.training.fit_args import FitArgs, should_validate

if TYPE_CHECKING:
    from app.engine.training.state import LoopState
    from app.engine.training.trainer import Trainer


def run_epochs(
    trainer: Trainer,
    train: BatchSource,
    val: BatchSource | None,
    args: FitArgs,
    cbs: CallbackList,
    resume: LoopState | None = None,
) -> None:
    """The epochs of a fit; with `resume`, the batch order continues the pass it stopped in
    and the callbacks carry on from their saved state (the trainer's part is restored
    already)."""
    assert args.batch_size is not None
    batches = trainer.batches = BatchIterator(
        train.size,
        args.batch_size,
        shuffle=args.shuffle,
        steps_per_epoch=args.steps_per_epoch,
        generator=trainer.generator,
        device=trainer.device,
    )
    if resume is not None and resume.batches is not None:  # continue the pass it stopped in
        batches.load_state(resume.batches.tensors, resume.batches.meta)
    params = trainer.model.trainable_parameters()
    per_call = trainer.spec.steps_per_execution
    trainer.model.set_generator(trainer.generator)
    trainer.stop_training = False
    logs: dict[str, float] = {}
    cbs.on_train_begin()
    first = args.initial_epoch
    if resume is not None and resume.callbacks is not None:  # the callbacks carry on
        saved = resume.callbacks
        tensors = {k: t.to(trainer.device) for k, t in saved.tensors.items()}
        callback_state.restore(cbs.callbacks, tensors, saved.entries)
        if resume.stop_training:  # a callback had ended the fit at the state's epoch: no more
            trainer.stop_training, first = True, args.epochs
    try:
        for epoch in range(first, args.epochs):
            trainer.reset_metrics()
            cbs.on_epoch_begin(epoch)
            indices, step, more = batches.epoch(), 0, True
            while more:
                # One "execution": up to steps_per_execution batches between the batch
                # callbacks, which see its first and last step and the running logs.
                more, ran = False, 0
                for index in indices:
                    if ran == 0:
                        cbs.on_train_batch_begin(step)
                    batch = train.take(index)
                    train.prefetch(batches.peek())  # read the next while this one trains
                    trainer.train_step(batch, params)
                    step, ran = step + 1, ran + 1
                    if ran == per_call:
                        more = True
                        break
                if ran:
                    cbs.on_train_batch_end(step - 1, LazyLogs(trainer.get_metrics_result))
                if trainer.stop_training:
                    break
            logs = trainer.get_metrics_result()
            if val is not None and should_validate(epoch, args.validation_freq):
                val_bs = args.validation_batch_size or args.batch_size
                val_logs = run_test(trainer, val, val_bs, cbs, args.validation_steps)
                logs = dict(
                    sorted({**logs, **{f"val_{k}": v for k, v in val_logs.items()}}.items())
                )
            trainer.epoch = epoch
            cbs.on_epoch_end(epoch, logs)
            if trainer.stop_training:
                break
        trainer.optimizer.finalize_variable_values()
        cbs.on_train_end(logs)
    finally:
        trainer.model.set_generator(None)


def run_test(
    trainer: Trainer,
    data: BatchSource,
    batch_size: int,
    callbacks: Callback,
    steps: int | None = None,
) -> dict[str, float]:
    """The one evaluation path: evaluate() and fit's validation both run this. `steps`
    batches at most, from the first (Keras restarts validation data every time)."""
    trainer.reset_metrics()
    callbacks.on_test_begin()
    end = data.size if steps is None else min(data.size, steps * batch_size)
    for lo in range(0, end, batch_size):
        trainer.test_step(data.take(slice(lo, lo + batch_size)))
        callbacks.on_test_batch_end(lo // batch_size)
    logs = trainer.get_metrics_result()
    callbacks.on_test_end(logs)
    return logs
