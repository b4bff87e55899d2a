//! Class activation maps combined on the device (`shaders/cam.wgsl`), so a CAM can stay there.

use super::kernels::{Bind, Kernel, Params};
use super::perturb::defer_dispatches;
use super::{GpuBackend, GpuTensor};
use crate::backend::{check_cam_combine, CamWeighting};
use crate::error::{Error, Result};

/// Two dispatches (channel weights, then the weighted sum; LayerCAM needs only the second) in
/// one submission.
pub(crate) fn cam_combine(
    gpu: &GpuBackend,
    acts: &GpuTensor,
    grads: &GpuTensor,
    weighting: CamWeighting,
    relu: bool,
) -> Result<GpuTensor> {
    let (n, k, hw) = check_cam_combine(acts.shape(), grads.shape())?;
    let (h, w) = (acts.shape()[2], acts.shape()[3]);
    let _exclusive = gpu.exclusive()?;
    let out = gpu.alloc(vec![n, 1, h, w])?;
    if n * hw == 0 {
        return Ok(out);
    }
    // Feature layers are small ([N, 1280, 7, 7] for MobileNetV2); one binding each suffices.
    if acts.byte_len() > gpu.binding_limit || acts.len() > u32::MAX as usize {
        return Err(Error::bad_input(format!(
            "a CAM over a layer of shape {:?} needs {} bytes in one binding, over this GPU's \
             storage binding limit of {} bytes",
            acts.shape(),
            acts.byte_len(),
            gpu.binding_limit
        )));
    }
    let mode = match weighting {
        CamWeighting::GradMean => 0,
        CamWeighting::GradPlusPlus => 1,
        CamWeighting::PositiveGrad => 2,
    };
    let weights = gpu.alloc(vec![n * k])?;
    // Deferred: the CAM rides along with whatever submits next (its upsample's read-back, or
    // the map texture).
    defer_dispatches(gpu, &[acts, grads, &weights, &out], "GPU CAM", |rec| {
        let weights_bind: Bind = if mode == 2 {
            (&gpu.dummy).into()
        } else {
            rec.dispatch_1d(
                Kernel::CamWeights,
                &[acts.into(), grads.into(), (&weights).into()],
                Params::new().us(&[n * k, hw, mode]),
                n * k,
            )?;
            (&weights).into()
        };
        rec.dispatch_1d(
            Kernel::CamCombine,
            &[acts.into(), grads.into(), weights_bind, (&out).into()],
            Params::new().us(&[n * hw, hw, k, mode, relu as usize]),
            n * hw,
        )
    })?;
    Ok(out)
}
