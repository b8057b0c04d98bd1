"""Training recipes: midtraining, SFT, a Bradley-Terry reward model, on-policy DPO, thin over TRL + accelerate.

One module per stage (``midtrain``, ``sft``, ``rm``, ``dpo``, ``pairs``), each with its config dataclass
(``tpro.config``: the flags of ``tpro train VERB``, its ``--config file.yaml`` and the Python API) beside the code
that uses it, a ``run(config)`` that does the work, and a ``main(argv)`` that runs the ``tpro train`` command (for
``python -m`` and ``accelerate launch -m``). ``chat`` turns conversations into token ids with loss masks
on the assistant turns, in both of T-pro's modes (direct, reasoning), through the model's own chat template;
``common`` holds what every stage shares (model loading, LoRA, checkpoint discovery, the run summary).

This package does not define models, losses or training loops (transformers, TRL and peft do), does not
tokenize vocabularies (``tpro.tokenizer``) and does not curate data (``tpro.data``). Multi-GPU runs are the same
modules under ``accelerate launch`` with the configs in ``configs/accelerate/``.
"""
