"""ppcfin's telling: HTML and PDF reports, Excel workbooks and charts built from result objects."""
