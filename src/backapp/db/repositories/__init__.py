"""Every query BackApp makes, one module per table; services call these, never SQL."""
