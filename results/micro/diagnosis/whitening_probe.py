"""Linear shape probe (Adam, 900 steps of batch 32) on ZCA-whitened cached states, per task, at the tag (s0)
and one position before (s1). `python whitening_probe.py NAME` (a state_cache.py cache in $CACHE, default .).
See diagnosis.md section 7."""
import torch, sys
D=torch.load(__import__('os').environ.get('CACHE', '.') + f'/cache_{sys.argv[1]}.pt')
for t in ("reasoning","referring"):
  for key in ("s0","s1"):
    tr=D[('train',t)]; va=D[('val',t)]
    x=tr[key]; xv=va[key]; m=x.mean(0)
    lam,U=torch.linalg.eigh(torch.cov((x-m).T)); W=U@torch.diag((lam.clamp(min=0)+1e-4*lam.max()).rsqrt())@U.T
    f=lambda z:(z-m)@W
    torch.manual_seed(0); lin=torch.nn.Linear(x.shape[1],6); opt=torch.optim.Adam(lin.parameters(),1e-3)
    for s in range(900):
        i=torch.randint(0,len(x),(32,)); l=torch.nn.functional.cross_entropy(lin(f(x[i])),tr['shape'][i]); opt.zero_grad(); l.backward(); opt.step()
    print(sys.argv[1], t, key, "whitened adam-900 val acc", round((lin(f(xv)).argmax(-1)==va['shape']).float().mean().item(),3))
