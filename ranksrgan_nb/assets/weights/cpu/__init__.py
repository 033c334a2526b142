"""The cpu-profile generators `srresnet.pth`, `srgan.pth`, `ranksrgan.pth`: fp16 state dicts of the default-width
`SRResNet()`; `ranksrgan sr --weights NAME` loads them."""
