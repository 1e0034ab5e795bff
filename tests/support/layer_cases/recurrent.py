"""Recurrent layers, their wrappers and masks: SimpleRNN, LSTM, GRU (both reset_after forms,
Keras's fused and cell code paths, per-gate dropout weights in inference), Bidirectional in every
merge mode, TimeDistributed over Dense and Conv2D, Masking, and Embedding(mask_zero) feeding
recurrent layers (the "int:N" inputs hold zeros, so whole steps, and sometimes whole rows, are
masked)."""

from __future__ import annotations

from typing import Any

SEQ = [None, 5, 3]
K = "keras.layers"  # nested layer entries need it for Keras's own loader


def _bi(layer: str, merge_mode: str = "concat", **config: Any) -> tuple[str, dict[str, Any]]:
    inner = {"module": K, "class_name": layer, "config": {"units": 3, **config}}
    return ("Bidirectional", {"layer": inner, "merge_mode": merge_mode})


def _td(layer: str, **config: Any) -> tuple[str, dict[str, Any]]:
    return ("TimeDistributed", {"layer": {"module": K, "class_name": layer, "config": config}})


def _embed(n: int = 4) -> tuple[str, dict[str, Any]]:
    return ("Embedding", {"input_dim": n, "output_dim": 3, "mask_zero": True})


CASES: dict[str, tuple[Any, ...]] = {
    "SimpleRNN": ([("SimpleRNN", {"units": 4})], SEQ),
    "SimpleRNN_seq_backwards_relu": ([("SimpleRNN", {"units": 4, "return_sequences": True,
                                                     "go_backwards": True,
                                                     "activation": "relu"})], SEQ),
    "SimpleRNN_no_bias_unrolled": ([("SimpleRNN", {"units": 2, "use_bias": False,
                                                   "unroll": True, "dropout": 0.5})], SEQ),
    "LSTM": ([("LSTM", {"units": 4})], SEQ),
    "LSTM_seq_backwards": ([("LSTM", {"units": 4, "return_sequences": True,
                                      "go_backwards": True})], SEQ),
    "LSTM_cell_path": ([("LSTM", {"units": 4, "use_cudnn": False, "return_sequences": True})],
                       SEQ),
    "LSTM_activations": ([("LSTM", {"units": 3, "activation": "relu",
                                    "recurrent_activation": "hard_sigmoid",
                                    "unit_forget_bias": False})], SEQ),
    "LSTM_no_bias_unrolled": ([("LSTM", {"units": 3, "use_bias": False, "unroll": True})], SEQ),
    "LSTM_recurrent_dropout": ([("LSTM", {"units": 3, "recurrent_dropout": 0.25,
                                          "dropout": 0.5, "return_sequences": True})], SEQ),
    "LSTM_stacked": ([("LSTM", {"units": 4, "return_sequences": True}),
                                   ("LSTM", {"units": 2})], [None, 7, 3]),
    "GRU": ([("GRU", {"units": 4})], SEQ),
    "GRU_reset_before": ([("GRU", {"units": 4, "reset_after": False})], SEQ),
    "GRU_reset_before_seq_backwards": ([("GRU", {"units": 3, "reset_after": False,
                                                 "return_sequences": True,
                                                 "go_backwards": True})], SEQ),
    "GRU_no_bias": ([("GRU", {"units": 3, "use_bias": False})], SEQ),
    "GRU_cell_path_relu": ([("GRU", {"units": 3, "use_cudnn": False, "activation": "relu",
                                     "recurrent_activation": "tanh"})], SEQ),
    "GRU_recurrent_dropout": ([("GRU", {"units": 3, "recurrent_dropout": 0.2,
                                        "return_sequences": True})], SEQ),
    "GRU_recurrent_dropout_reset_before": ([("GRU", {"units": 3, "recurrent_dropout": 0.2,
                                                     "reset_after": False})], SEQ),
    "Bidirectional_LSTM": ([_bi("LSTM")], SEQ),
    "Bidirectional_GRU_sum": ([_bi("GRU", "sum", return_sequences=True)], SEQ),
    "Bidirectional_SimpleRNN_mul": ([_bi("SimpleRNN", "mul")], SEQ),
    "Bidirectional_LSTM_ave": ([_bi("LSTM", "ave", return_sequences=True)], SEQ),
    "Bidirectional_backward_layer": ([("Bidirectional", {
        "layer": {"module": K, "class_name": "LSTM",
                  "config": {"units": 3, "return_sequences": True}},
        "backward_layer": {"module": K, "class_name": "GRU",
                           "config": {"units": 2, "go_backwards": True,
                                      "return_sequences": True}},
    })], SEQ),
    "TimeDistributed_Dense": ([_td("Dense", units=4, activation="tanh")], SEQ),
    "TimeDistributed_Conv2D": ([_td("Conv2D", filters=2, kernel_size=3, padding="same"),
                                _td("Flatten"),
                                ("LSTM", {"units": 2})], [None, 3, 6, 6, 2]),
    "TimeDistributed_BatchNormalization": ([_td("BatchNormalization")], SEQ),
    "LSTM_then_TimeDistributed": ([("LSTM", {"units": 4, "return_sequences": True}),
                                   _td("Dense", units=2)], SEQ),
    "Masking": ([("Masking", {"mask_value": 0.5}), ("LSTM", {"units": 3})], SEQ),
    # Embedding(mask_zero): masked steps keep the state and repeat (or zero) the output.
    "mask_LSTM": ([_embed(), ("LSTM", {"units": 3})], [None, 6], "int:4"),
    "mask_LSTM_seq_Dense": ([_embed(), ("LSTM", {"units": 3, "return_sequences": True}),
                             ("Dense", {"units": 2})], [None, 6], "int:4"),
    "mask_LSTM_zero_output": ([_embed(), ("LSTM", {"units": 3, "return_sequences": True,
                                                   "zero_output_for_mask": True})],
                              [None, 6], "int:4"),
    "mask_GRU_backwards": ([_embed(), ("GRU", {"units": 3, "go_backwards": True,
                                               "return_sequences": True})], [None, 6], "int:4"),
    "mask_GRU_reset_before": ([_embed(), ("GRU", {"units": 3, "reset_after": False})],
                              [None, 6], "int:3"),
    "mask_SimpleRNN_unrolled": ([_embed(), ("SimpleRNN", {"units": 3, "unroll": True,
                                                          "return_sequences": True})],
                                [None, 6], "int:3"),
    "mask_Bidirectional": ([_embed(), _bi("LSTM", return_sequences=True),
                            _bi("GRU", "sum")], [None, 6], "int:4"),
    "mask_through_layers": ([_embed(), ("Dropout", {"rate": 0.5}), _td("Dense", units=3),
                             ("Activation", {"activation": "relu"}),
                             ("LayerNormalization", {}), ("LSTM", {"units": 2})],
                            [None, 6], "int:4"),
    "mask_GlobalAveragePooling1D": ([_embed(), ("GlobalAveragePooling1D", {})],
                                    [None, 6], "int:4"),
}  # fmt: skip
