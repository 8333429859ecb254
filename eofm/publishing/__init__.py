"""The Hub: the client, what a published repo holds, model cards, keeping local paths private."""
