"""Remote control: authenticated input, RPC and their injection into the X session."""
