//! Embedding in a wgpu host: the example's own path (examples/support/host.rs) run headless and
//! its rendered pixels checked against the CPU colormap of the CPU backend's Grad-CAM; map
//! textures in each format; the CAM formulas, GPU against CPU; and a device whose limits are too
//! low.

mod common;
#[path = "../examples/support/host.rs"]
mod host;

use common::*;
use netlens::gpu::{GpuBackend, GpuOptions, MapFormat};
use netlens::input::{image_tensor, Preprocess};
use netlens::methods::attribution::{Attribute, Attribution, MapKind, Target};
use netlens::methods::gradcam::{weighted_map, CamVariant, CamWeights, GradCam};
use netlens::methods::{channel_abs_max, upsample_bilinear, Score};
use netlens::model::import::load_model;
use netlens::viz::{heatmap, turbo};
use netlens::{Backend, ErrorKind, HostTensor};
use std::path::Path;
use std::time::Instant;

fn digit() -> (String, String) {
    (
        asset("models/tiny_digits.onnx"),
        asset("digits/digit_3_idx0649.png"),
    )
}

/// The largest per-channel difference between RGBA pixels and RGB pixels, in 8-bit steps, and
/// how many channels differ at all; alpha must be opaque.
fn pixel_diff(rgba: &[u8], rgb: &[u8]) -> (u8, usize) {
    assert_eq!(rgba.len() / 4, rgb.len() / 3, "pixel count");
    let mut max = 0u8;
    let mut differing = 0;
    for (p, q) in rgba.chunks(4).zip(rgb.chunks(3)) {
        assert_eq!(p[3], 255, "alpha");
        for c in 0..3 {
            let d = p[c].abs_diff(q[c]);
            max = max.max(d);
            differing += (d > 0) as usize;
        }
    }
    (max, differing)
}

/// The example's path on a host-opened device with wgpu's default limits: the rendered target
/// equals the CPU Turbo colormap of the CPU backend's upsampled Grad-CAM within one 8-bit step.
#[test]
fn embedded_gradcam_texture_matches_the_cpu_colormap() {
    let host = host::open_host().unwrap_or_else(|e| panic!("GPU tests need a wgpu adapter: {e}"));
    let (model_path, image_path) = digit();
    let pre = Preprocess::unit();
    let start = Instant::now();
    let r = host::explain_and_draw(
        &host,
        Path::new(&model_path),
        Path::new(&image_path),
        &pre,
        None,
    )
    .expect("example path");
    let elapsed = start.elapsed();

    let model = load_model(&model_path).unwrap();
    let x = image_tensor(&image_path, &pre, model.input_shape()).unwrap();
    let cpu_logits = run_backend(&cpu(), &model, &x);
    assert_eq!(r.class, argmax(&cpu_logits.data), "top class");
    let cam = GradCam::default()
        .attribute(&cpu(), &model, &x, &[r.class])
        .unwrap()
        .remove(0);
    assert!(
        (r.score - cam.score).abs() <= 1e-4 * cam.score.abs().max(1.0),
        "score {} vs {}",
        r.score,
        cam.score
    );
    let lowres_err = rel_err(&r.lowres.data, &cam.lowres.data, 1e-6);
    assert!(lowres_err < 1e-4, "low-res CAM rel err {lowres_err}");
    assert!(
        cam.lowres.data.iter().any(|&v| v > 0.0),
        "a blank CAM proves nothing"
    );
    assert_eq!(
        (r.size.1 as usize, r.size.0 as usize),
        (x.shape[2], x.shape[3])
    );
    let (max, differing) = pixel_diff(&r.rgba, &heatmap(&cam.upsampled));
    println!(
        "{}x{} target: max channel diff {max}/255, {differing} of {} channels differ; \
         low-res rel err {lowres_err:.2e}; {:.2} s, {} frames",
        r.size.0,
        r.size.1,
        r.rgba.len() / 4 * 3,
        elapsed.as_secs_f64(),
        r.frames
    );
    assert!(max <= 1, "max channel difference {max}/255");
}

/// Reads a texture through the host helpers.
fn texture_bytes(g: &GpuBackend, texture: &wgpu::Texture) -> Vec<u8> {
    let mut encoder = g.device().create_command_encoder(&Default::default());
    let bytes = host::read_texture(g.device(), &mut encoder, texture);
    g.queue().submit(Some(encoder.finish()));
    host::frame_loop(g.device(), bytes).0
}

/// R32Float holds the bilinear upsampling itself; Turbo with a fixed range clamps outside it;
/// both at a size that is not a multiple of the map's, with rows needing padding.
#[test]
fn map_textures_resample_and_colour_like_the_host() {
    let host = host::open_host().unwrap_or_else(|e| panic!("GPU tests need a wgpu adapter: {e}"));
    let g = GpuBackend::from_wgpu(host.device, host.queue, &GpuOptions::default()).unwrap();
    let map = random(&[3, 4], 7);
    let t = g.upload(&map).unwrap();
    let (w, h) = (7u32, 5u32);
    let want = upsample_bilinear(&map, h as usize, w as usize);

    let tex = g.map_texture(&t, MapFormat::R32Float, w, h).unwrap();
    assert_eq!(tex.format(), wgpu::TextureFormat::R32Float);
    let raw: Vec<f32> = bytemuck::pod_collect_to_vec(&texture_bytes(&g, &tex));
    let err = rel_err(&raw, &want.data, 1e-6);
    assert!(err < 1e-5, "R32Float rel err {err}");

    let (min, max) = (-0.5f32, 0.25f32);
    let tex = g
        .map_texture(&t, MapFormat::Turbo { min, max }, w, h)
        .unwrap();
    let rgb: Vec<u8> = want
        .data
        .iter()
        .flat_map(|&v| turbo((v - min) / (max - min)).map(|c| (c * 255.0).round() as u8))
        .collect();
    let (diff, _) = pixel_diff(&texture_bytes(&g, &tex), &rgb);
    assert!(diff <= 1, "Turbo max channel diff {diff}/255");

    // A [1, 1, h, w] map gives the same texture as [h, w].
    let t4 = g
        .upload(&HostTensor::new(vec![1, 1, 3, 4], map.data.clone()).unwrap())
        .unwrap();
    let auto = |t| texture_bytes(&g, &g.map_texture(t, MapFormat::TurboAuto, w, h).unwrap());
    assert_eq!(auto(&t), auto(&t4));
    let (diff, _) = pixel_diff(&auto(&t), &heatmap(&want));
    assert!(diff <= 1, "TurboAuto max channel diff {diff}/255");
}

/// Any attribution's sample as a device map and a texture, with nothing read back: a
/// per-element map is shown as the max over channels of |value| (three channels here, sample 1
/// of 2), a CAM from its low-res map; both equal the host's `display` of that sample.
#[test]
fn attribution_maps_and_textures_show_one_sample() {
    let host = host::open_host().unwrap_or_else(|e| panic!("GPU tests need a wgpu adapter: {e}"));
    let g = GpuBackend::from_wgpu(host.device, host.queue, &GpuOptions::default()).unwrap();
    let maps = random(&[2, 3, 5, 4], 3);
    let a = Attribution {
        method: "test",
        kind: MapKind::PerElement,
        maps: g.upload(&maps).unwrap(),
        lowres: None,
        layer: None,
        logits: g.upload(&HostTensor::zeros(vec![2, 10])).unwrap(),
        targets: vec![0, 1],
        score: Score::Logit,
        baseline_logits: None,
        extras: Vec::new(),
    };
    let before = g.stats();
    let shown = g.attribution_map(&a, 1).unwrap();
    assert_eq!(g.stats().readbacks, before.readbacks);
    let want = a.read(&g).unwrap().display(1);
    assert_eq!(
        want.data,
        channel_abs_max(&HostTensor::new(vec![3, 5, 4], maps.sample(1).to_vec()).unwrap()).data
    );
    assert_eq!(g.read(&shown).unwrap().data, want.data);
    let e = g.attribution_map(&a, 2).unwrap_err();
    assert_eq!(e.kind, ErrorKind::BadInput, "{e}");

    let (model_path, image_path) = digit();
    let model = load_model(&model_path).unwrap();
    let x = image_tensor(&image_path, &Preprocess::unit(), model.input_shape()).unwrap();
    let pair = HostTensor::new(vec![2, 1, 16, 16], [x.data.clone(), x.data].concat()).unwrap();
    let cam = GradCam::default()
        .attribute_batch(&g, &model, &pair, &Target::PerSample(vec![3, 5]))
        .unwrap();
    let before = g.stats();
    let tex = g
        .attribution_texture(&cam, 1, MapFormat::R32Float, 16, 16)
        .unwrap();
    assert_eq!(g.stats().readbacks, before.readbacks);
    let raw: Vec<f32> = bytemuck::pod_collect_to_vec(&texture_bytes(&g, &tex));
    let want = cam.read(&g).unwrap().display(1);
    assert!(
        want.data.iter().any(|&v| v > 0.0),
        "a blank CAM proves nothing"
    );
    let err = rel_err(&raw, &want.data, 1e-6);
    assert!(err < 1e-5, "CAM texture rel err {err}");
}

#[test]
fn map_texture_rejects_bad_input() {
    let g = gpu();
    let t = g.upload(&random(&[2, 3, 4], 1)).unwrap();
    let e = g.map_texture(&t, MapFormat::TurboAuto, 8, 8).unwrap_err();
    assert_eq!(e.kind, ErrorKind::BadInput, "{e}");
    let t = g.upload(&random(&[3, 4], 1)).unwrap();
    for (format, w) in [
        (MapFormat::Turbo { min: 1.0, max: 1.0 }, 8),
        (
            MapFormat::Turbo {
                min: 0.0,
                max: f32::NAN,
            },
            8,
        ),
        (MapFormat::R32Float, 0),
    ] {
        let e = g.map_texture(&t, format, w, 8).unwrap_err();
        assert_eq!(e.kind, ErrorKind::BadInput, "{format:?}: {e}");
    }
}

/// The CAM formulas (each variant's weights over the generic ops, then the weighted map), GPU
/// against the CPU oracle, for every variant, with and without ReLU, over a batch of two.
#[test]
fn cam_formulas_gpu_match_cpu() {
    let acts = random(&[2, 5, 3, 4], 11);
    let grads = random(&[2, 5, 3, 4], 12);
    let (ga, gd) = (gpu().upload(&acts).unwrap(), gpu().upload(&grads).unwrap());
    let (ca, cd) = (cpu().upload(&acts).unwrap(), cpu().upload(&grads).unwrap());
    for variant in [
        CamVariant::GradCam,
        CamVariant::GradCamPlusPlus,
        CamVariant::LayerCam,
    ] {
        for relu in [false, true] {
            let gw = variant.weights(gpu(), &ga, &gd).unwrap();
            let g = gpu()
                .read(&weighted_map(gpu(), &ga, &gw, relu).unwrap())
                .unwrap();
            let cw = variant.weights(&cpu(), &ca, &cd).unwrap();
            let c = cpu()
                .read(&weighted_map(&cpu(), &ca, &cw, relu).unwrap())
                .unwrap();
            assert_eq!(g.shape, vec![2, 1, 3, 4]);
            assert_eq!(g.shape, c.shape);
            let err = rel_err(&g.data, &c.data, 1e-6);
            assert!(err < 1e-4, "{variant:?} relu {relu}: rel err {err}");
            if !relu {
                assert!(c.data.iter().any(|&v| v < 0.0), "{variant:?}: no sign");
            }
        }
    }
    let flat = random(&[2, 5, 3], 1);
    let e = weighted_map(gpu(), &ga, &gpu().upload(&flat).unwrap(), true).unwrap_err();
    assert_eq!(e.kind, ErrorKind::BadInput, "{e}");
    let e = weighted_map(&cpu(), &ca, &cpu().upload(&flat).unwrap(), true).unwrap_err();
    assert_eq!(e.kind, ErrorKind::BadInput, "{e}");
}

/// On the CPU backend the device path and the host path run the same formula: identical maps.
#[test]
fn attribute_device_equals_attribute_on_the_cpu() {
    let (model_path, image_path) = digit();
    let model = load_model(&model_path).unwrap();
    let x = image_tensor(&image_path, &Preprocess::unit(), model.input_shape()).unwrap();
    for variant in [
        CamVariant::GradCam,
        CamVariant::GradCamPlusPlus,
        CamVariant::LayerCam,
    ] {
        let gc = GradCam {
            variant,
            ..Default::default()
        };
        let host = gc.attribute(&cpu(), &model, &x, &[5]).unwrap().remove(0);
        let dev = gc.attribute_device(&cpu(), &model, &x, 5).unwrap();
        assert_eq!(dev.map.shape[2..], host.lowres.shape[..], "{variant:?}");
        assert_eq!(dev.map.data, host.lowres.data, "{variant:?}");
        assert_eq!(dev.output.data[5], host.score, "{variant:?}");
        assert_eq!(dev.layer, host.layer);
    }
}

/// A host device opened with WebGL2's limits (no storage buffers in compute) is refused with the
/// limits named, not a panic or a validation error later.
#[test]
fn from_wgpu_names_the_limits_a_device_lacks() {
    let instance =
        wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter = pollster::block_on(instance.request_adapter(&Default::default()))
        .unwrap_or_else(|e| panic!("GPU tests need a wgpu adapter: {e}"));
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        required_limits: wgpu::Limits::downlevel_webgl2_defaults(),
        ..Default::default()
    }))
    .unwrap();
    let e = GpuBackend::from_wgpu(device, queue, &GpuOptions::default())
        .err()
        .expect("too-low limits refused");
    assert_eq!(e.kind, ErrorKind::Device);
    let msg = e.to_string();
    assert!(
        msg.contains("max_storage_buffers_per_shader_stage is 0, needs 4"),
        "{msg}"
    );
}

/// The embedding docs promise a host may record from a worker thread.
#[test]
fn gpu_backend_is_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<GpuBackend>();
    send_sync::<netlens::gpu::GpuTensor>();
}
