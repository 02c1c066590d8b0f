"""`twolayer run`: the driver, the pytest subprocess, retiming, and the ranks of a distributed run."""
