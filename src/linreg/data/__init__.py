"""Where rows come from (sources), how they are served (loaders), and the DataModule over both."""
