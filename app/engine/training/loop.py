"""The epoch loop of fit, as Keras's torch trainer runs it: callback hooks in Keras's order,
batches from the batch iterator, validation at the end of the epochs `validation_freq` picks,
`stop_training` the only early exit.

`steps_per_execution` (Keras's torch backend refuses values above 1) runs that many batches
between the batch callbacks: `on_train_batch_begin` gets the group's first batch index and
`on_train_batch_end` its last (the final, shorter group included) with the running logs; the
batches, and so the numbers, are the same as with 1.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.engine.arrays.checks import BatchSource
from app.engine.callbacks import CallbackList, LazyLogs
from app.engine.callbacks import state as callback_state
from app.engine.training.batches import BatchIterator
from app.engine.training.fit_args import FitArgs, should_validate

if TYPE_CHECKING:
    from app.engine.training.trainer import Trainer


def run_epochs(
    trainer: Trainer,
    train: BatchSource,
    val: BatchSource | None,
    args: FitArgs,
    cbs: CallbackList,
) -> None:
    assert args.batch_size is not None
    batches = trainer.batches = BatchIterator(
        train.size, args.batch_size, shuffle=args.shuffle,
        steps_per_epoch=args.steps_per_epoch, generator=trainer.generator, device=trainer.device,
    )  # fmt: skip
    if trainer._batches_state is not None:  # continue the pass a checkpoint stopped in
        batches.load_state(*trainer._batches_state)
        trainer._batches_state = None
    params = trainer.model.trainable_parameters()
    per_call = trainer.spec.steps_per_execution
    trainer.model.set_generator(trainer.generator)
    trainer.stop_training = False
    logs: dict[str, float] = {}
    cbs.on_train_begin()
    first = args.initial_epoch
    if trainer._callbacks_state is not None:  # a resumed fit's callbacks carry on
        tensors, entries, stopped = trainer._callbacks_state
        trainer._callbacks_state = None
        callback_state.restore(cbs.callbacks, tensors, entries)
        if stopped:  # a callback had ended the fit at the checkpoint's epoch: no epoch more
            trainer.stop_training, first = True, args.epochs
    try:
        for epoch in range(first, args.epochs):
            trainer._reset_metrics()
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
                    trainer._train_step(batch, params)
                    step, ran = step + 1, ran + 1
                    if ran == per_call:
                        more = True
                        break
                if ran:
                    cbs.on_train_batch_end(step - 1, LazyLogs(trainer._logs))
                if trainer.stop_training:
                    break
            logs = trainer._logs()
            if val is not None and should_validate(epoch, args.validation_freq):
                val_bs = args.validation_batch_size or args.batch_size
                val_logs = trainer._test_loop(val, val_bs, cbs, args.validation_steps)
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
