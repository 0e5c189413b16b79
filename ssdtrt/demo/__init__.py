"""The demo job (`ssdtrt demo` / `make demo`) and its report."""
