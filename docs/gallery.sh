#!/usr/bin/env bash
# Regenerates the README gallery (docs/gallery/*.png): every method on the cat with MobileNetV2,
# class 285 (Egyptian cat), on the CPU backend. Run from the repository root after `cargo build --release`.
set -euo pipefail
N=./target/release/netlens
M=assets/models/mobilenetv2_imagenet.onnx
I=assets/images/chelsea.png
T=$(mktemp -d)
for m in saliency guided smoothgrad ig cam gradcam gradcam++ layercam guided-gradcam occlusion; do
  $N "$m" $M $I --class 285 --backend cpu -q -o "$T/$m" >/dev/null
  cp "$T/$m/${m}_285.png" "docs/gallery/$m.png"
done
$N lime $M $I --class 285 --num-samples 1000 --backend cpu -q -o "$T/lime" >/dev/null
cp "$T/lime/lime_285.png" docs/gallery/lime.png
$N activations $M $I --layer /features/features.0/features.0.0/Conv_output_0 --backend cpu -q -o "$T/act" >/dev/null
cp "$T/act/montage.png" docs/gallery/activations_montage.png
$N deepdream $M --layer /features/features.8/conv/conv.0/conv.0.2/Clip_output_0 --channels 0,1,2,3 \
  --start gray --backend cpu -q -o "$T/dream" >/dev/null
cp "$T/dream/montage.png" docs/gallery/deepdream_montage.png
rm -rf "$T"
