"""Linear shape probe fitted to convergence (LBFGS, standardised states) on the text-only cache, per task, at the
tag (s0) and one position before (s1). `python state_probe_lbfgs.py` (cache_txt.pt in $CACHE, default .).
See diagnosis.md section 7."""
import torch, sys
D=torch.load(__import__('os').environ.get('CACHE', '.') + '/cache_txt.pt')
for t in ("reasoning","referring"):
  for key in ("s0","s1"):
    tr=D[('train',t)]; va=D[('val',t)]
    m=tr[key].mean(0); sd=tr[key].std(0)
    x=(tr[key]-m)/sd; xv=(va[key]-m)/sd
    lin=torch.nn.Linear(x.shape[1],6); opt=torch.optim.LBFGS(lin.parameters(),max_iter=300)
    def cl():
        opt.zero_grad(); l=torch.nn.functional.cross_entropy(lin(x),tr['shape'])+1e-3*lin.weight.pow(2).sum(); l.backward(); return l
    opt.step(cl)
    acc=(lin(xv).argmax(-1)==va['shape']).float().mean().item()
    maj=torch.bincount(va['shape']).max().item()/len(va['shape'])
    print(t,key,'val acc',round(acc,3),'majority',round(maj,3))
