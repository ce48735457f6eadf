"""Why the decoder could not use the state: the same linear shape probe (Adam, 900 steps of batch 32) on
reasoning s1 states, standardised vs ZCA-whitened vs layer-normed, and the singular values of the centred
states. `python conditioning_probe.py` (cache_txt.pt in $CACHE, default .). See diagnosis.md section 7."""
import torch
D=torch.load(__import__('os').environ.get('CACHE', '.') + '/cache_txt.pt'); t="reasoning"
tr=D[('train',t)]; va=D[('val',t)]
x=tr['s1']; xv=va['s1']
m=x.mean(0); sd=x.std(0)
# PCA whitening
xc=x-m; U,S,V=torch.linalg.svd(xc/ (len(x)**.5), full_matrices=False)
print("singular values top/bottom", S[:5], S[-5:])
W=V.T/ S.clamp(min=1e-4)
for name, f in (("std", lambda z:(z-m)/sd), ("white", lambda z:(z-m)@W), ("ln", torch.nn.LayerNorm(128, elementwise_affine=False))):
    torch.manual_seed(0); lin=torch.nn.Linear(128,6); opt=torch.optim.Adam(lin.parameters(),1e-3)
    for s in range(900):
        i=torch.randint(0,len(x),(32,)); l=torch.nn.functional.cross_entropy(lin(f(x[i])),tr['shape'][i]); opt.zero_grad(); l.backward(); opt.step()
    print(name, "adam 900 val acc", (lin(f(xv)).argmax(-1)==va['shape']).float().mean().item())
