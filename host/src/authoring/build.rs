//! `ballast plugin build`: the one place that knows how to turn a plugin project of each language into a
//! `ballast:policy@0.1.0` component, installing what the language needs (the Rust wasm target, the project's npm
//! packages, componentize-py) when it is missing. CI builds the JavaScript and Python plugins through it too.
//!
//! | language | detected by | build |
//! |---|---|---|
//! | Rust | `Cargo.toml` | `cargo build --profile plugin --target wasm32-wasip2` (the SDK generates the bindings) |
//! | JavaScript | `package.json` | `npm ci`, then componentize-qjs (QuickJS) `--sync --stub-wasi --opt-size` |
//! | Python | `app.py` | componentize-py (pinned in `build-requirements.txt`, installed in a cached venv) |

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The world every plugin targets.
pub(crate) const WORLD: &str = "scaling-policy";
const WASM_TARGET: &str = "wasm32-wasip2";
/// The Cargo profile plugins build with (small and fast; defined in the project's or workspace's Cargo.toml).
const CARGO_PROFILE: &str = "plugin";
/// The file a Python project pins componentize-py in.
pub(crate) const PYTHON_BUILD_REQUIREMENTS: &str = "build-requirements.txt";
/// The module componentize-py wraps: a Python project's `app.py` defines `class Policy(exports.Policy)`.
const PYTHON_APP: &str = "app";

/// A plugin project's language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Language {
    Rust,
    #[value(name = "js", alias = "javascript")]
    JavaScript,
    #[value(alias = "py")]
    Python,
}

impl Language {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Language::Rust => "rust",
            Language::JavaScript => "javascript",
            Language::Python => "python",
        }
    }

    /// The language of the project in `dir`, from the file that defines it.
    pub(crate) fn detect(dir: &Path) -> Result<Language, BuildError> {
        [("Cargo.toml", Language::Rust), ("package.json", Language::JavaScript), ("app.py", Language::Python)]
            .into_iter()
            .find(|(file, _)| dir.join(file).is_file())
            .map(|(_, language)| language)
            .ok_or_else(|| BuildError::NotAProject { dir: dir.to_owned() })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(
        "{dir}: not a plugin project (no Cargo.toml, package.json or app.py); create one with \
         `ballast plugin new --lang rust|js|python NAME`"
    )]
    NotAProject { dir: PathBuf },
    #[error("{tool} is needed to build a {language} plugin but {problem}; {fix}")]
    MissingTool { tool: &'static str, language: &'static str, problem: String, fix: String },
    #[error("`{command}` failed ({status}) in {dir}{output}")]
    CommandFailed { command: String, dir: PathBuf, status: String, output: String },
    #[error(
        "{dir}: no WIT found: neither {dir}/wit nor a policies-wit/wit above it; put the world there \
         (`ballast plugin new` writes wit/policy.wit)"
    )]
    NoWit { dir: PathBuf },
    #[error("{path}: {problem}")]
    BadProject { path: PathBuf, problem: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// A finished build.
#[derive(Debug, Clone)]
pub struct Built {
    pub language: Language,
    pub output: PathBuf,
    pub size: u64,
    /// Size after gzip -9: what a ConfigMap would hold.
    pub gzipped: u64,
    pub(crate) elapsed: Duration,
}

impl Built {
    /// `ballast plugin build`'s line: the component, its language, sizes and build time.
    pub fn summary(&self) -> String {
        let mib = |bytes: u64| bytes as f64 / f64::from(1 << 20);
        format!(
            "{} ({} plugin, {:.2} MiB, {:.2} MiB gzipped, built in {:.1}s)",
            self.output.display(),
            self.language.name(),
            mib(self.size),
            mib(self.gzipped),
            self.elapsed.as_secs_f64()
        )
    }
}

/// Builds the project in `dir` (its language detected from its files) into `out`, or into `dir/dist/NAME.wasm`.
/// The build tools' own output goes to standard error.
pub fn build(dir: &Path, out: Option<&Path>) -> Result<Built, BuildError> {
    let started = Instant::now();
    let dir = std::fs::canonicalize(dir).map_err(|source| BuildError::Io { path: dir.to_owned(), source })?;
    let language = Language::detect(&dir)?;
    let out = match out {
        Some(path) => absolute(path)?,
        None => dir.join("dist").join(format!("{}.wasm", project_name(language, &dir)?)),
    };
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent).map_err(|source| BuildError::Io { path: parent.to_owned(), source })?;
    }
    match language {
        Language::Rust => build_rust(&dir, &out)?,
        Language::JavaScript => build_js(&dir, &out)?,
        Language::Python => build_python(&dir, &out)?,
    }
    let bytes = std::fs::read(&out).map_err(|source| BuildError::Io { path: out.clone(), source })?;
    Ok(Built {
        language,
        output: out,
        size: bytes.len() as u64,
        gzipped: gzipped_len(&bytes),
        elapsed: started.elapsed(),
    })
}

fn absolute(path: &Path) -> Result<PathBuf, BuildError> {
    std::path::absolute(path).map_err(|source| BuildError::Io { path: path.to_owned(), source })
}

/// The component's default file name: the npm package name, or the directory's name.
fn project_name(language: Language, dir: &Path) -> Result<String, BuildError> {
    let dir_name = || dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "plugin".into());
    Ok(match language {
        Language::Rust | Language::Python => dir_name(),
        Language::JavaScript => {
            let name = package_json(dir)?.get("name").and_then(|n| n.as_str()).map(str::to_owned);
            // A scoped name (`@team/policy`) gives `policy`.
            name.map(|n| n.rsplit('/').next().unwrap_or(&n).to_owned()).unwrap_or_else(dir_name)
        }
    })
}

pub(crate) fn gzipped_len(bytes: &[u8]) -> u64 {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes).expect("writing to memory");
    encoder.finish().expect("writing to memory").len() as u64
}

/// The WIT a JavaScript or Python project builds against: its own `wit/`, or the repository's `policies-wit/wit`
/// for the plugins inside this repository.
fn wit_dir(dir: &Path) -> Result<PathBuf, BuildError> {
    if dir.join("wit").is_dir() {
        return Ok(dir.join("wit"));
    }
    dir.ancestors()
        .map(|a| a.join("policies-wit").join("wit"))
        .find(|w| w.is_dir())
        .ok_or_else(|| BuildError::NoWit { dir: dir.to_owned() })
}

/// The version of the `ballast:policy` package in a WIT directory (a project scaffolded for 0.1 keeps building
/// against 0.1); the current world's when no file names it.
fn world_version(wit: &Path) -> String {
    const PACKAGE: &str = "package ballast:policy@";
    let files = std::fs::read_dir(wit).into_iter().flatten().flatten().map(|e| e.path());
    files
        .filter(|p| p.extension().is_some_and(|e| e == "wit"))
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .find_map(|text| {
            let at = text.find(PACKAGE)? + PACKAGE.len();
            let version = text[at..].split(';').next()?.trim();
            Some(version.to_owned())
        })
        .unwrap_or_else(|| crate::runtime::World::CURRENT.version().to_owned())
}

/// Runs a build step; its standard output goes to our standard error so `ballast plugin build` prints only the
/// result on standard output.
fn run(command: &mut Command, tool: &'static str, language: Language, fix: &str) -> Result<(), BuildError> {
    let output = command
        .stdout(Stdio::from(std::io::stderr()))
        .stderr(Stdio::inherit())
        .status()
        .map_err(|e| missing_tool(tool, language, e, fix))?;
    check_status(command, output, "")
}

fn missing_tool(tool: &'static str, language: Language, error: std::io::Error, fix: &str) -> BuildError {
    BuildError::MissingTool {
        tool,
        language: language.name(),
        problem: format!("running it failed: {error}"),
        fix: fix.to_owned(),
    }
}

fn check_status(command: &Command, status: std::process::ExitStatus, output: &str) -> Result<(), BuildError> {
    if status.success() {
        return Ok(());
    }
    let program = command.get_program().to_string_lossy().into_owned();
    let args = command.get_args().map(|a| a.to_string_lossy().into_owned()).collect::<Vec<_>>().join(" ");
    Err(BuildError::CommandFailed {
        command: format!("{program} {args}"),
        dir: command.get_current_dir().map(Path::to_owned).unwrap_or_default(),
        status: status.to_string(),
        output: if output.trim().is_empty() { String::new() } else { format!(":\n{}", output.trim_end()) },
    })
}

// --- Rust -------------------------------------------------------------------------------------------------------

const RUSTUP_FIX: &str = "install Rust with rustup (https://rustup.rs), then `rustup target add wasm32-wasip2`";

fn build_rust(dir: &Path, out: &Path) -> Result<(), BuildError> {
    ensure_wasm_target(dir)?;
    let manifest = dir.join("Cargo.toml");
    let mut cargo = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cargo.current_dir(dir).args(["build", "--profile", CARGO_PROFILE, "--target", WASM_TARGET]);
    cargo.args(["--message-format", "json-render-diagnostics", "--manifest-path"]).arg(&manifest);
    // Flags meant for a native build (coverage, sanitizers) are not meant for the plugin.
    for var in ["RUSTFLAGS", "CARGO_ENCODED_RUSTFLAGS", "CARGO_BUILD_TARGET"] {
        cargo.env_remove(var);
    }
    let output =
        cargo.stderr(Stdio::inherit()).output().map_err(|e| missing_tool("cargo", Language::Rust, e, RUSTUP_FIX))?;
    check_status(&cargo, output.status, "")?;
    let wasm =
        built_wasm(&String::from_utf8_lossy(&output.stdout), &manifest).ok_or_else(|| BuildError::BadProject {
            path: manifest.clone(),
            problem: "cargo built no .wasm: the package needs `[lib] crate-type = [\"cdylib\"]`".into(),
        })?;
    std::fs::copy(&wasm, out).map_err(|source| BuildError::Io { path: wasm, source })?;
    Ok(())
}

/// The `.wasm` cargo reported for the package of `manifest`, from its JSON messages.
fn built_wasm(messages: &str, manifest: &Path) -> Option<PathBuf> {
    messages
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact")
        .filter(|m| m["manifest_path"].as_str().is_some_and(|p| Path::new(p) == manifest))
        .flat_map(|m| m["filenames"].as_array().cloned().unwrap_or_default())
        .filter_map(|f| f.as_str().map(PathBuf::from))
        .find(|f| f.extension().is_some_and(|e| e == "wasm"))
}

fn ensure_wasm_target(dir: &Path) -> Result<(), BuildError> {
    let sysroot = Command::new("rustc")
        .current_dir(dir)
        .args(["--print", "sysroot"])
        .output()
        .map_err(|e| missing_tool("rustc", Language::Rust, e, RUSTUP_FIX))?;
    let sysroot = PathBuf::from(String::from_utf8_lossy(&sysroot.stdout).trim());
    if sysroot.join("lib/rustlib").join(WASM_TARGET).is_dir() {
        return Ok(());
    }
    run(
        Command::new("rustup").current_dir(dir).args(["target", "add", WASM_TARGET]),
        "rustup",
        Language::Rust,
        RUSTUP_FIX,
    )
}

// --- JavaScript -------------------------------------------------------------------------------------------------

const NODE_FIX: &str = "install Node.js 18 or newer with npm (Debian: `apt-get install nodejs npm`)";

fn package_json(dir: &Path) -> Result<serde_json::Value, BuildError> {
    let path = dir.join("package.json");
    let text = std::fs::read_to_string(&path).map_err(|source| BuildError::Io { path: path.clone(), source })?;
    serde_json::from_str(&text).map_err(|e| BuildError::BadProject { path, problem: format!("invalid JSON: {e}") })
}

fn build_js(dir: &Path, out: &Path) -> Result<(), BuildError> {
    let package = package_json(dir)?;
    let entry = package.get("main").and_then(|m| m.as_str()).ok_or_else(|| BuildError::BadProject {
        path: dir.join("package.json"),
        problem: "no `main`: set it to the module that exports `policy` (e.g. \"main\": \"src/policy.js\")".into(),
    })?;
    let wit = wit_dir(dir)?;
    install_npm_packages(dir)?;
    let componentize = dir.join("node_modules/.bin/componentize-qjs");
    if !componentize.exists() {
        return Err(BuildError::BadProject {
            path: dir.join("package.json"),
            problem: "componentize-qjs is not among its devDependencies; add it with \
                      `npm install --save-dev --save-exact componentize-qjs@0.4.5`"
                .into(),
        });
    }
    let wrapper = write_js_entry(dir, entry, &world_version(&wit))?;
    // --sync: no component-model async ABI; --stub-wasi: no WASI imports at all; --opt-size: the smaller QuickJS
    // runtime (about 1.1 MB instead of 1.6 MB, so the component fits a ConfigMap gzipped); --module-root: the
    // project, which the generated entry and the plugin's own modules lie in.
    let mut command = Command::new(&componentize);
    command.current_dir(dir).arg("--wit").arg(&wit).args(["--world", WORLD, "--js"]).arg(&wrapper);
    command.arg("--module-root").arg(dir);
    command.args(["--sync", "--stub-wasi", "--opt-size", "--output"]).arg(out);
    run(&mut command, "componentize-qjs", Language::JavaScript, NODE_FIX)
}

/// The module componentize-qjs builds from: the plugin's own `policy`, with `console` sent to the host's log (WASI
/// is stubbed out, so nothing else would carry it) and an uncaught exception logged before it traps, so that its
/// text reaches the operator instead of a bare "unreachable".
fn write_js_entry(dir: &Path, entry: &str, version: &str) -> Result<PathBuf, BuildError> {
    let path = dir.join("node_modules/.ballast/entry.js");
    let text =
        JS_ENTRY.replace("{ENTRY}", &format!("../../{}", entry.trim_start_matches("./"))).replace("{VERSION}", version);
    std::fs::create_dir_all(path.parent().expect("a parent"))
        .and_then(|()| std::fs::write(&path, text))
        .map_err(|source| BuildError::Io { path: path.clone(), source })?;
    Ok(path)
}

const JS_ENTRY: &str = r#"// Generated by `ballast plugin build`: do not edit.
import { log } from "ballast:policy/host@{VERSION}";
import * as plugin from "{ENTRY}";

const show = (value) => {
  if (typeof value === "string") return value;
  if (value instanceof Error) return `${value.name}: ${value.message}`;
  try {
    return JSON.stringify(value);
  } catch {
    return String(value);
  }
};
const to = (level) => (...args) => log(level, args.map(show).join(" "));
globalThis.console = { log: to("info"), info: to("info"), debug: to("debug"), warn: to("warn"), error: to("error") };

export const policy = {
  decide(input) {
    try {
      return plugin.policy.decide(input);
    } catch (error) {
      // `{ tag, val }` is the policy's own error result, not an exception.
      if (error !== null && typeof error === "object" && "tag" in error && "val" in error) throw error;
      log("error", `uncaught ${show(error)}`);
      throw error;
    }
  },
};
"#;

/// `npm ci` when the installed packages are missing or older than the lockfile (`npm install` without one).
fn install_npm_packages(dir: &Path) -> Result<(), BuildError> {
    let lock = dir.join("package-lock.json");
    let installed = dir.join("node_modules/.package-lock.json");
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let up_to_date = match (modified(&lock), modified(&installed)) {
        (Some(lock), Some(installed)) => installed >= lock,
        (None, Some(_)) => true,
        _ => false,
    };
    if up_to_date {
        return Ok(());
    }
    let install = if lock.exists() { "ci" } else { "install" };
    run(
        Command::new("npm").current_dir(dir).args([install, "--no-audit", "--no-fund"]),
        "npm",
        Language::JavaScript,
        NODE_FIX,
    )
}

// --- Python -----------------------------------------------------------------------------------------------------

const PYTHON_FIX: &str = "install Python 3 with venv and pip (Debian: `apt-get install python3 python3-venv`)";

fn build_python(dir: &Path, out: &Path) -> Result<(), BuildError> {
    let requirements = dir.join(PYTHON_BUILD_REQUIREMENTS);
    let pins = std::fs::read(&requirements).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => BuildError::BadProject {
            path: requirements.clone(),
            problem: "missing: it pins the build tool, e.g. one line `componentize-py==0.25.1`".into(),
        },
        _ => BuildError::Io { path: requirements.clone(), source },
    })?;
    let wit = wit_dir(dir)?;
    let venv = python_tools(&requirements, &pins)?;
    let mut command = Command::new(venv.join("bin/componentize-py"));
    command.current_dir(dir).arg("-d").arg(&wit).args(["-w", WORLD, "componentize", PYTHON_APP, "-p"]).arg(dir);
    command.arg("-o").arg(out);
    // The app is bundled with the standard library only, not with whatever environment the caller has active.
    command.env_remove("VIRTUAL_ENV");
    run(&mut command, "componentize-py", Language::Python, PYTHON_FIX)
}

/// A venv with the pinned build tools, shared by every project with the same pins (keyed by their sha256) under
/// the user's cache directory; created on first use.
fn python_tools(requirements: &Path, pins: &[u8]) -> Result<PathBuf, BuildError> {
    let key = &crate::runtime::digest(pins)[..16];
    let venv = tools_cache_dir().join(format!("python-{key}"));
    let ready = venv.join(".ballast-installed");
    if ready.exists() {
        return Ok(venv);
    }
    run(Command::new("python3").args(["-m", "venv"]).arg(&venv), "python3", Language::Python, PYTHON_FIX)?;
    let pip = venv.join("bin/pip");
    run(
        Command::new(&pip).args(["install", "--disable-pip-version-check", "--quiet", "-r"]).arg(requirements),
        "pip",
        Language::Python,
        PYTHON_FIX,
    )?;
    std::fs::write(&ready, pins).map_err(|source| BuildError::Io { path: ready, source })?;
    Ok(venv)
}

/// `$XDG_CACHE_HOME/ballast/tools`, or `~/.cache/ballast/tools`.
fn tools_cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("ballast").join("tools")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_the_language_from_the_project_files() {
        let dir = tempfile::tempdir().unwrap();
        let err = Language::detect(dir.path()).unwrap_err().to_string();
        assert!(err.contains("not a plugin project") && err.contains("ballast plugin new"), "{err}");
        std::fs::write(dir.path().join("app.py"), "").unwrap();
        assert_eq!(Language::detect(dir.path()).unwrap(), Language::Python);
        std::fs::write(dir.path().join("package.json"), "{}").unwrap();
        assert_eq!(Language::detect(dir.path()).unwrap(), Language::JavaScript);
        std::fs::write(dir.path().join("Cargo.toml"), "").unwrap();
        assert_eq!(Language::detect(dir.path()).unwrap(), Language::Rust);
    }

    #[test]
    fn finds_the_wasm_cargo_reported_for_the_package() {
        let manifest = Path::new("/p/plugin/Cargo.toml");
        let messages = [
            r#"{"reason":"compiler-artifact","manifest_path":"/p/sdk/Cargo.toml","filenames":["/t/libsdk.rlib"]}"#,
            r#"{"reason":"compiler-artifact","manifest_path":"/p/plugin/Cargo.toml","filenames":["/t/plugin.wasm"]}"#,
            r#"{"reason":"build-finished","success":true}"#,
        ]
        .join("\n");
        assert_eq!(built_wasm(&messages, manifest), Some(PathBuf::from("/t/plugin.wasm")));
        assert_eq!(built_wasm(&messages, Path::new("/p/other/Cargo.toml")), None);
    }

    #[test]
    fn a_project_wit_comes_before_the_repository_wit() {
        let root = tempfile::tempdir().unwrap();
        let project = root.path().join("plugins/mine");
        std::fs::create_dir_all(&project).unwrap();
        assert!(matches!(wit_dir(&project), Err(BuildError::NoWit { .. })));
        std::fs::create_dir_all(root.path().join("policies-wit/wit")).unwrap();
        assert_eq!(wit_dir(&project).unwrap(), root.path().join("policies-wit/wit"));
        std::fs::create_dir_all(project.join("wit")).unwrap();
        assert_eq!(wit_dir(&project).unwrap(), project.join("wit"));
    }

    #[test]
    fn the_js_entry_imports_the_host_interface_of_the_projects_world() {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies-wit");
        assert_eq!(world_version(&repo.join("wit")), crate::runtime::World::CURRENT.version());
        assert_eq!(world_version(&repo.join("wit-0.1")), "0.1.0");
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(world_version(empty.path()), crate::runtime::World::CURRENT.version());
    }
}
