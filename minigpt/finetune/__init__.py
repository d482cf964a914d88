"""Fine-tuning a pretrained GPT: a classifier on its last token, instruction tuning, LoRA
adapters, and the command `python -m minigpt finetune`.

    lora.py              LoRA adapters: targets by name, merge, save/load on their own
    store.py             atomic saving of tensors + readable JSON
    options.py           the commands' shared training flags, their checks, bad input as one line
    loop.py              the epoch loop both commands run: schedule, shuffled batches, Ctrl-C, progress bar
    text_data.py         texts -> token ids -> padded batches; truncation; the pad token
    sms_spam.py          the SMS Spam Collection (or any label<TAB>text file), balanced and split
    classifier.py        GPTClassifier: body + last-token pooling + linear head; what trains
    train_classifier.py  the fine-tuning loop: metrics.jsonl, plot, results.json, checkpoints
    baseline.py          bag-of-words logistic regression, by hand in NumPy
    compare.py           the table of training choices on one split
    instruct_data.py     instruction examples: the Alpaca prompt, the 85/5/10 split, the loss mask
    instruct_generate.py answering an instruction: generate until end-of-text or the length limit
    rouge.py             ROUGE-L, the automatic score of the answers against the references
    instruct_train.py    instruction tuning: the loss loop, test answers, results.json
    cli.py, classify_command.py, label_command.py, instruct_command.py   the commands

The model side is minigpt.model.GPT's body (forward_hidden / backward_hidden) and
minigpt.layers' pairs (last_token_*, classifier_head_*, lora_*); the optimizer is
minigpt.optim.AdamW over parameter groups.
"""
