#!/bin/bash
# Identical code, each run in a fresh --out (no quiet canary known, as on a fresh CI runner):
# three quiet runs, then two under a one-thread co-tenant, then one quiet again.
cd /work/main
R=/tmp/e1
SEL="--quick --variants numpy_manual,torch_manual,torch_autograd,module_linear --no-peak"
t() { local name=$1; local s=$(date +%s); twolayer run $SEL --out $R/$name > $R/$name.log 2>&1; echo "$name rc=$? $(( $(date +%s) - s )) s load=$(cut -d' ' -f1 /proc/loadavg)"; }
uptime
t quiet1; t quiet2; t quiet3
OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 python -c "
import numpy as np, time
a = np.random.rand(400, 400)
end = time.time() + 900
while time.time() < end:
    a = a @ a; a /= a.max()
" & CT=$!
sleep 3
t busy1; t busy2
kill $CT
sleep 5
t quiet4
echo done
