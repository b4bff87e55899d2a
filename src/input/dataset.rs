//! Folders of images as data sets: a recursive, sorted walk; labels from `labels.csv` or from
//! sub-folder names; batches decoded in parallel with the model's preprocessing.
//!
//! ```text
//! root/labels.csv            file,label[,anything]   (file relative to root; header optional)
//! root/cat/001.png           or, without labels.csv, the first folder under root is the label
//! root/001.png               images straight under root get no label from folders
//! ```

use std::collections::{BTreeSet, HashMap};
use std::io::Read;
use std::ops::Range;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::{batch, image_tensor, Preprocess};
use crate::backend::HostTensor;
use crate::error::{Error, Result};

/// Name of the optional labels file at a data set's root.
pub const LABELS_CSV: &str = "labels.csv";

/// One image of a data set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    /// The image file: the data set's root joined with the file's place below it.
    pub path: PathBuf,
    /// The ground-truth label as written in `labels.csv` or as the sub-folder's name.
    pub label: Option<String>,
}

/// A folder of images with optional labels, in a deterministic order (sorted by path).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dataset {
    /// The folder that was walked, as given.
    pub root: PathBuf,
    /// The images found, sorted by path so that runs and reports are reproducible.
    pub items: Vec<Item>,
    /// The distinct labels, sorted.
    pub classes: Vec<String>,
    /// Files under the root that are not PNG or JPEG images (by content), skipped.
    pub skipped: Vec<PathBuf>,
}

impl Dataset {
    /// Walks `dir` recursively and collects its PNG and JPEG images (recognised by their first
    /// bytes, whatever the extension). Other files are skipped with one warning on stderr naming
    /// how many; hidden files (`.name`) and `labels.csv` are ignored silently. Labels come from
    /// `dir/labels.csv` if it exists, else from the first folder under `dir` when images live in
    /// sub-folders, else there are none.
    ///
    /// Errors (bad input): `dir` is not a readable folder, it holds no image, or `labels.csv` is
    /// malformed.
    pub fn open(dir: impl AsRef<Path>) -> Result<Dataset> {
        let ds = Dataset::open_quiet(dir)?;
        if !ds.skipped.is_empty() {
            let shown: Vec<String> = ds
                .skipped
                .iter()
                .take(3)
                .map(|p| p.display().to_string())
                .collect();
            let more = if ds.skipped.len() > 3 { ", ..." } else { "" };
            eprintln!(
                "netlens: warning: skipped {} file(s) in {} that are not PNG or JPEG images ({}{more})",
                ds.skipped.len(),
                ds.root.display(),
                shown.join(", ")
            );
        }
        Ok(ds)
    }

    /// [`Dataset::open`] without the warning; skipped files are in [`Dataset::skipped`].
    pub fn open_quiet(dir: impl AsRef<Path>) -> Result<Dataset> {
        let root = dir.as_ref().to_path_buf();
        let shown = root.display();
        let meta = std::fs::metadata(&root)
            .map_err(|e| Error::bad_input(format!("cannot read data set folder {shown}: {e}")))?;
        if !meta.is_dir() {
            return Err(Error::bad_input(format!(
                "data set {shown} is not a folder; give a folder of images"
            )));
        }
        let mut files = Vec::new();
        walk(&root, &mut files)?;
        files.sort();
        let csv = root.join(LABELS_CSV);
        let (mut images, mut skipped): (Vec<PathBuf>, Vec<PathBuf>) = files
            .into_par_iter()
            .filter(|p| *p != csv)
            .partition(|p| is_image(p));
        images.sort();
        skipped.sort();
        if images.is_empty() {
            let what = if skipped.is_empty() {
                "no files at all".to_string()
            } else {
                format!(
                    "{} file(s), none of them a PNG or JPEG image",
                    skipped.len()
                )
            };
            return Err(Error::bad_input(format!(
                "data set folder {shown} holds no images ({what})"
            )));
        }
        let labels = if csv.is_file() {
            let table = read_labels_csv(&csv)?;
            images
                .iter()
                .map(|p| {
                    let rel = relative_key(&root, p);
                    table.get(&rel).cloned()
                })
                .collect()
        } else {
            folder_labels(&root, &images)
        };
        let items: Vec<Item> = images
            .into_iter()
            .zip(labels)
            .map(|(path, label)| Item { path, label })
            .collect();
        let classes: BTreeSet<String> = items.iter().filter_map(|i| i.label.clone()).collect();
        Ok(Dataset {
            root,
            items,
            classes: classes.into_iter().collect(),
            skipped,
        })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True when the folder held no PNG or JPEG image.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The path of item `i` relative to the root, with `/` separators (for reports).
    pub fn relative(&self, i: usize) -> String {
        relative_key(&self.root, &self.items[i].path)
    }

    /// Items `range` decoded in parallel and preprocessed into one batch `[n, C, H, W]`, where
    /// `input` is the model's per-sample shape. A file that cannot be decoded is an error naming it.
    pub fn load(
        &self,
        range: Range<usize>,
        pre: &Preprocess,
        input: &[usize],
    ) -> Result<HostTensor> {
        let indices: Vec<usize> = range.collect();
        self.load_items(&indices, pre, input)
    }

    /// Like [`Dataset::load`], for any items in any order.
    pub fn load_items(
        &self,
        indices: &[usize],
        pre: &Preprocess,
        input: &[usize],
    ) -> Result<HostTensor> {
        if let Some(&bad) = indices.iter().find(|&&i| i >= self.len()) {
            return Err(Error::internal(format!(
                "data set item {bad} is outside its {} items",
                self.len()
            )));
        }
        let tensors = indices
            .par_iter()
            .map(|&i| image_tensor(&self.items[i].path, pre, input))
            .collect::<Result<Vec<_>>>()?;
        batch(tensors)
    }

    /// Each item's class index in a model with `num_classes` outputs. A label maps to the class
    /// whose name (from the model's labels file, `names`) equals it; failing that, a label that
    /// is a whole number below `num_classes` is taken as the index itself. Unlabelled items and
    /// labels that match neither give `None`.
    pub fn targets(&self, names: Option<&[String]>, num_classes: usize) -> Vec<Option<usize>> {
        let by_name: HashMap<&str, usize> = names
            .unwrap_or(&[])
            .iter()
            .enumerate()
            .map(|(i, n)| (n.trim(), i))
            .collect();
        self.items
            .iter()
            .map(|it| {
                let l = it.label.as_deref()?.trim();
                by_name
                    .get(l)
                    .copied()
                    .or_else(|| l.parse::<usize>().ok().filter(|&k| k < num_classes))
            })
            .collect()
    }
}

/// Collects every regular file under `dir`, skipping hidden entries (`.git`, `.DS_Store`).
fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| Error::bad_input(format!("cannot list {}: {e}", dir.display())))?;
    for entry in entries {
        let entry =
            entry.map_err(|e| Error::bad_input(format!("cannot list {}: {e}", dir.display())))?;
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        // metadata() follows symlinks, so a linked folder of images is walked like a real one.
        match std::fs::metadata(&path) {
            Ok(m) if m.is_dir() => walk(&path, out)?,
            Ok(m) if m.is_file() => out.push(path),
            _ => {}
        }
    }
    Ok(())
}

/// Whether the file starts with a PNG or JPEG signature; unreadable files count as not images.
fn is_image(path: &Path) -> bool {
    let mut head = Vec::with_capacity(16);
    let read = std::fs::File::open(path).and_then(|f| f.take(16).read_to_end(&mut head));
    read.is_ok()
        && matches!(
            image::guess_format(&head),
            Ok(image::ImageFormat::Png | image::ImageFormat::Jpeg)
        )
}

fn relative_key(root: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// The first folder under `root` of each image; `None` for images straight under `root`.
fn folder_labels(root: &Path, images: &[PathBuf]) -> Vec<Option<String>> {
    images
        .iter()
        .map(|p| {
            let rel = p.strip_prefix(root).ok()?;
            let mut parts = rel.components();
            let first = parts.next()?;
            // A lone file name has nothing after it: it sits at the root.
            parts.next()?;
            Some(first.as_os_str().to_string_lossy().into_owned())
        })
        .collect()
}

/// `file,label[,...]` rows; a first row whose first two fields are `file` and `label` is a
/// header. Files are relative to the CSV's folder, with `/` separators.
fn read_labels_csv(path: &Path) -> Result<HashMap<String, String>> {
    let shown = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::bad_input(format!("cannot read {shown}: {e}")))?;
    let mut table = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let mut fields = line.split(',').map(|f| f.trim().trim_matches('"'));
        let (file, label) = match (fields.next(), fields.next()) {
            (Some(f), Some(l)) if !f.is_empty() => (f, l),
            _ => {
                return Err(Error::bad_input(format!(
                    "{shown}, line {}: expected 'file,label', got '{line}'",
                    n + 1
                )))
            }
        };
        if n == 0 && file.eq_ignore_ascii_case("file") && label.eq_ignore_ascii_case("label") {
            continue;
        }
        let key = file.trim_start_matches("./").replace('\\', "/");
        table.insert(key, label.to_string());
    }
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("netlens-dataset-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn png(path: &Path, v: u8) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        image::GrayImage::from_pixel(4, 4, image::Luma([v]))
            .save(path)
            .unwrap();
    }

    #[test]
    fn folder_labels_sorted_and_non_images_skipped() {
        let d = scratch("folders");
        png(&d.join("b/2.png"), 1);
        png(&d.join("a/deep/1.png"), 2);
        png(&d.join("root.png"), 3);
        std::fs::write(d.join("a/notes.txt"), "hello").unwrap();
        std::fs::write(d.join("a/fake.png"), "not a png").unwrap();
        std::fs::write(d.join(".hidden"), "x").unwrap();
        let ds = Dataset::open_quiet(&d).unwrap();
        let rel: Vec<String> = (0..ds.len()).map(|i| ds.relative(i)).collect();
        assert_eq!(rel, ["a/deep/1.png", "b/2.png", "root.png"]);
        let labels: Vec<Option<&str>> = ds.items.iter().map(|i| i.label.as_deref()).collect();
        assert_eq!(labels, [Some("a"), Some("b"), None]);
        assert_eq!(ds.classes, ["a", "b"]);
        assert_eq!(ds.skipped.len(), 2);
    }

    #[test]
    fn labels_csv_wins_and_maps_to_classes() {
        let d = scratch("csv");
        png(&d.join("x.png"), 1);
        png(&d.join("sub/y.png"), 2);
        png(&d.join("z.png"), 3);
        std::fs::write(
            d.join(LABELS_CSV),
            "file,label,split\nx.png,cat,train\nsub/y.png,7\n",
        )
        .unwrap();
        let ds = Dataset::open_quiet(&d).unwrap();
        let labels: Vec<Option<&str>> = ds.items.iter().map(|i| i.label.as_deref()).collect();
        assert_eq!(labels, [Some("7"), Some("cat"), None]);
        let names = vec!["dog".to_string(), "cat".to_string()];
        assert_eq!(ds.targets(Some(&names), 10), [Some(7), Some(1), None]);
        assert_eq!(ds.targets(None, 5), [None, None, None]);
        let x = ds.load(0..3, &Preprocess::unit(), &[1, 4, 4]).unwrap();
        assert_eq!(x.shape, [3, 1, 4, 4]);
        assert_eq!(x.data[16], 1.0 / 255.0);
    }

    #[test]
    fn empty_and_imageless_folders_are_bad_input() {
        let d = scratch("empty");
        let e = Dataset::open_quiet(&d).unwrap_err();
        assert_eq!(e.kind, crate::error::ErrorKind::BadInput);
        assert!(e.message.contains("no images"), "{e}");
        std::fs::write(d.join("a.txt"), "x").unwrap();
        let e = Dataset::open_quiet(&d).unwrap_err();
        assert!(e.message.contains("1 file(s)"), "{e}");
        let e = Dataset::open_quiet(d.join("a.txt")).unwrap_err();
        assert!(e.message.contains("not a folder"), "{e}");
    }
}
