//! The host application's side of `examples/embed.rs`, shared with `tests/embed.rs` so the test
//! runs the example's own code path: a device the host opens itself, netlens on that device, a
//! Grad-CAM texture drawn by a tiny render pipeline into an offscreen target, and every result
//! brought back through futures that a frame loop polls without ever blocking.

#![allow(dead_code)] // Each includer uses its own part.

use std::future::Future;
use std::path::Path;
use std::pin::pin;
use std::task::{Context, Poll};

use netlens::engine::Engine;
use netlens::gpu::MapFormat;
use netlens::input::{image_tensor, Preprocess};
use netlens::methods::attribution::{Attribute, Target};
use netlens::methods::gradcam::GradCam;
use netlens::model::import::load_model;
use netlens::HostTensor;

/// What the host opened: the instance is kept so the adapter can be named.
pub struct Host {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub adapter: wgpu::AdapterInfo,
}

/// Opens a device as a host application would, on its own: `WGPU_BACKEND` picks the API, and
/// the device gets wgpu's default limits (not the adapter's), which netlens has to live with.
pub fn open_host() -> Result<Host, String> {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    if let Some(backends) = wgpu::Backends::from_env() {
        desc.backends = backends;
    }
    let instance = wgpu::Instance::new(desc);
    let adapter = pollster::block_on(instance.request_adapter(&Default::default()))
        .map_err(|e| format!("no GPU adapter ({e}); on a machine without a GPU, apt-get install -y mesa-vulkan-drivers gives lavapipe"))?;
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        label: Some("host"),
        required_limits: wgpu::Limits::default(),
        ..Default::default()
    }))
    .map_err(|e| format!("cannot open a device: {e}"))?;
    Ok(Host {
        device,
        queue,
        adapter: adapter.get_info(),
    })
}

/// Drives `fut` the way a frame loop would: each "frame" polls the device without waiting
/// (`PollType::Poll`), then looks at the future once; nothing ever blocks on the GPU. Returns
/// the output and the number of frames it took.
pub fn frame_loop<F: Future>(device: &wgpu::Device, fut: F) -> (F::Output, usize) {
    let mut fut = pin!(fut);
    let mut cx = Context::from_waker(std::task::Waker::noop());
    for frame in 1.. {
        device
            .poll(wgpu::PollType::Poll)
            .expect("polling the device");
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return (out, frame);
        }
        // The rest of a frame: the host's own work would go here.
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    unreachable!()
}

/// The fullscreen triangle: samples the map texture with a nearest sampler, so a target of the
/// texture's own size gets every texel exactly.
const BLIT: &str = r#"
@group(0) @binding(0) var map: texture_2d<f32>;
@group(0) @binding(1) var nearest: sampler;

struct Varyings {
    @builtin(position) pos: vec4<f32>,
    @location(0) uv: vec2<f32>,
}

@vertex
fn vs(@builtin(vertex_index) i: u32) -> Varyings {
    let uv = vec2<f32>(f32((i << 1u) & 2u), f32(i & 2u));
    return Varyings(vec4<f32>(uv.x * 2.0 - 1.0, 1.0 - uv.y * 2.0, 0.0, 1.0), uv);
}

@fragment
fn fs(v: Varyings) -> @location(0) vec4<f32> {
    return textureSample(map, nearest, v.uv);
}
"#;

pub const TARGET_FORMAT: wgpu::TextureFormat = wgpu::TextureFormat::Rgba8Unorm;

/// Encodes one render pass drawing `map` over all of `target` (what a host's frame would do
/// with the texture netlens made).
pub fn draw_map(
    device: &wgpu::Device,
    encoder: &mut wgpu::CommandEncoder,
    map: &wgpu::Texture,
    target: &wgpu::TextureView,
) {
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some("blit"),
        source: wgpu::ShaderSource::Wgsl(BLIT.into()),
    });
    let pipeline = device.create_render_pipeline(&wgpu::RenderPipelineDescriptor {
        label: Some("blit"),
        layout: None,
        vertex: wgpu::VertexState {
            module: &module,
            entry_point: Some("vs"),
            compilation_options: Default::default(),
            buffers: &[],
        },
        primitive: Default::default(),
        depth_stencil: None,
        multisample: Default::default(),
        fragment: Some(wgpu::FragmentState {
            module: &module,
            entry_point: Some("fs"),
            compilation_options: Default::default(),
            targets: &[Some(TARGET_FORMAT.into())],
        }),
        multiview_mask: None,
        cache: None,
    });
    let sampler = device.create_sampler(&wgpu::SamplerDescriptor {
        mag_filter: wgpu::FilterMode::Nearest,
        min_filter: wgpu::FilterMode::Nearest,
        ..Default::default()
    });
    let view = map.create_view(&Default::default());
    let bind = device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some("blit"),
        layout: &pipeline.get_bind_group_layout(0),
        entries: &[
            wgpu::BindGroupEntry {
                binding: 0,
                resource: wgpu::BindingResource::TextureView(&view),
            },
            wgpu::BindGroupEntry {
                binding: 1,
                resource: wgpu::BindingResource::Sampler(&sampler),
            },
        ],
    });
    let mut pass = encoder.begin_render_pass(&wgpu::RenderPassDescriptor {
        label: Some("draw map"),
        color_attachments: &[Some(wgpu::RenderPassColorAttachment {
            view: target,
            depth_slice: None,
            resolve_target: None,
            ops: wgpu::Operations {
                load: wgpu::LoadOp::Clear(wgpu::Color::BLACK),
                store: wgpu::StoreOp::Store,
            },
        })],
        ..Default::default()
    });
    pass.set_pipeline(&pipeline);
    pass.set_bind_group(0, &bind, &[]);
    pass.draw(0..3, 0..1);
}

/// Records a copy of a whole 4-byte-texel texture into a fresh buffer (rows padded to 256
/// bytes) and returns a future of its tightly packed bytes, resolved by the host's polling.
pub fn read_texture(
    device: &wgpu::Device,
    encoder: &mut wgpu::CommandEncoder,
    texture: &wgpu::Texture,
) -> impl Future<Output = Vec<u8>> + use<> {
    let size = texture.size();
    let row = size.width * 4;
    let padded = row.next_multiple_of(wgpu::COPY_BYTES_PER_ROW_ALIGNMENT);
    let buffer = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("read texture"),
        size: (padded * size.height) as u64,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    encoder.copy_texture_to_buffer(
        texture.as_image_copy(),
        wgpu::TexelCopyBufferInfo {
            buffer: &buffer,
            layout: wgpu::TexelCopyBufferLayout {
                offset: 0,
                bytes_per_row: Some(padded),
                rows_per_image: None,
            },
        },
        size,
    );
    let (tx, rx) = futures::channel::oneshot::channel();
    let mapped = buffer.clone();
    // map_async only after the copy is submitted: the future asks for it on its first poll.
    let mut asked = Some(tx);
    let mut rx = Some(rx);
    std::future::poll_fn(move |cx| {
        if let Some(tx) = asked.take() {
            mapped.map_async(wgpu::MapMode::Read, .., move |r| {
                let _ = tx.send(r);
            });
        }
        match std::pin::Pin::new(rx.as_mut().expect("polled after completion")).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(r) => {
                r.expect("map callback dropped")
                    .expect("mapping the target");
                rx = None;
                let view = mapped.get_mapped_range(..).expect("mapped range");
                let bytes = view
                    .chunks(padded as usize)
                    .flat_map(|r| &r[..row as usize])
                    .copied()
                    .collect();
                drop(view);
                mapped.unmap();
                Poll::Ready(bytes)
            }
        }
    })
}

/// Everything the example produces.
pub struct Rendered {
    /// The offscreen target, RGBA8, `size.0 × size.1`.
    pub rgba: Vec<u8>,
    pub size: (u32, u32),
    pub class: usize,
    pub score: f32,
    /// The low-resolution CAM netlens computed, read back through `read_async`.
    pub lowres: HostTensor,
    /// Frames the loop ran until everything came back.
    pub frames: usize,
    /// Time the host thread spent in the calls that record and submit the explanation, the
    /// texture and the frame (on lavapipe this includes waiting for earlier submissions: it
    /// accepts a submission only once the previous one has finished).
    pub in_calls: std::time::Duration,
    /// Time from then until the frame loop had every result.
    pub waiting: std::time::Duration,
}

/// The example end to end on the host's device: netlens on the host's device and queue, the
/// model and image, Grad-CAM of `class` (the top class if `None`) as a Turbo texture of the
/// input's size, drawn by the host's render pipeline into an offscreen target, and the target,
/// the score and the map brought back through one polled future.
pub fn explain_and_draw(
    host: &Host,
    model_path: &Path,
    image_path: &Path,
    preprocess: &Preprocess,
    class: Option<usize>,
) -> netlens::Result<Rendered> {
    let (device, queue) = (&host.device, &host.queue);
    // 1. netlens on the host's device (clones of the shared handles).
    let engine = Engine::from_wgpu(device.clone(), queue.clone())?;
    let gpu = engine.gpu().expect("from_wgpu gives the GPU backend");
    // 2. Load time: the model and the image.
    let model = load_model(model_path)?;
    let x = image_tensor(image_path, preprocess, model.input_shape())?;
    let (h, w) = (x.shape[2] as u32, x.shape[3] as u32);
    let class = match class {
        Some(c) => c,
        None => {
            // The top class, read without blocking: a forward, then its logits as a future.
            use netlens::Backend;
            let input = gpu.upload(&x)?;
            let logits = gpu.forward(&model, &input, &[])?.output;
            let (logits, _) = frame_loop(device, gpu.read_async(&logits));
            netlens::engine::top_k(&logits?.data, 1)[0]
        }
    };
    // Still load time: one explanation to build every kernel pipeline (lavapipe compiles them
    // on the calling thread), waited for through the frame loop.
    let target = Target::Class(class);
    let warm = GradCam::default().attribute_batch(gpu, &model, &x, &target)?;
    let warm = gpu.attribution_texture(&warm, 0, MapFormat::TurboAuto, w, h)?;
    let mut encoder = device.create_command_encoder(&Default::default());
    let warmed = read_texture(device, &mut encoder, &warm);
    queue.submit(Some(encoder.finish()));
    frame_loop(device, warmed);

    // 3. The explanation, left on the device; 4. its texture. Both submit without waiting.
    let start = std::time::Instant::now();
    let cam = GradCam::default().attribute_batch(gpu, &model, &x, &target)?;
    let texture = gpu.attribution_texture(&cam, 0, MapFormat::TurboAuto, w, h)?;
    // 5. The host's frame: draw the texture into its target and submit. netlens' work is
    //    already on the queue ahead of it.
    let target = device.create_texture(&wgpu::TextureDescriptor {
        label: Some("offscreen target"),
        size: texture.size(),
        mip_level_count: 1,
        sample_count: 1,
        dimension: wgpu::TextureDimension::D2,
        format: TARGET_FORMAT,
        usage: wgpu::TextureUsages::RENDER_ATTACHMENT | wgpu::TextureUsages::COPY_SRC,
        view_formats: &[],
    });
    let mut encoder = device.create_command_encoder(&Default::default());
    draw_map(
        device,
        &mut encoder,
        &texture,
        &target.create_view(&Default::default()),
    );
    let pixels = read_texture(device, &mut encoder, &target);
    queue.submit(Some(encoder.finish()));
    // Numbers for the CPU side, as futures; the frame loop polls until all three are in.
    let logits = gpu.read_async(&cam.logits);
    let lowres = gpu.read_async(cam.lowres.as_ref().expect("Grad-CAM has a low-res map"));
    let in_calls = start.elapsed();
    let ((rgba, logits, lowres), frames) =
        frame_loop(device, futures::future::join3(pixels, logits, lowres));
    Ok(Rendered {
        rgba,
        size: (w, h),
        class,
        score: logits?.data[class],
        lowres: lowres?,
        frames,
        in_calls,
        waiting: start.elapsed() - in_calls,
    })
}
