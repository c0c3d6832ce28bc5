"""attnlab core: the attention library, reusable blocks and the training plumbing shared by all domains."""
