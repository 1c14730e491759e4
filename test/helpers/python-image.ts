/**
 * A Cog-like trainer image built here from the machine's own Python, never pulled: a rootfs
 * with the interpreter (as /usr/bin/python3 and /usr/bin/python), the shared libraries `ldd`
 * names for it and for its extension modules, its standard library, and the Cog-protocol
 * stand-in (test/helpers/cog) installed as the `cog` package, so that the image's
 * `python -m cog.server.http` is what a real Cog image runs. `docker import` turns the rootfs
 * into an image, which is pushed to `registry` and returned by digest.
 */
import { execFileSync, spawn } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, copyFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const COG_PACKAGE = fileURLToPath(new URL('./cog', import.meta.url));
/** Not needed to run a Cog server stand-in; they make the image much larger. */
const SKIP = new Set(['test', 'tests', 'idlelib', 'tkinter', 'turtledemo', 'ensurepip', 'lib2to3', '__pycache__', 'site-packages', 'dist-packages', 'config-3.11-x86_64-linux-gnu']);

interface PythonLayout {
  exe: string;
  stdlib: string;
  dynload: string;
  version: string;
}

/** Debian's interpreter when present (its layout is plain /usr), else whichever python3 is first. */
function pythonLayout(): PythonLayout {
  const python = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
  const script =
    'import json,os,sys,sysconfig;' +
    'print(json.dumps({"exe": os.path.realpath(sys.executable), "stdlib": sysconfig.get_paths()["stdlib"],' +
    ' "dynload": sysconfig.get_config_var("DESTSHARED"), "version": "%d.%d" % sys.version_info[:2]}))';
  return JSON.parse(execFileSync(python, ['-c', script], { encoding: 'utf8' })) as PythonLayout;
}

/** glibc loads libgcc_s itself when a thread exits (ldd does not name it); without it Python aborts. */
function dlopened(): string[] {
  const out = execFileSync('ldconfig', ['-p'], { encoding: 'utf8' });
  const found = out.match(/libgcc_s\.so\.1 \(libc6,x86-64\) => (\S+)/) ?? out.match(/libgcc_s\.so\.1 .*=> (\S+)/);
  return found ? [found[1]!] : [];
}

function sharedLibraries(files: string[]): string[] {
  const libs = new Set<string>(dlopened());
  for (const file of files) {
    let out = '';
    try {
      out = execFileSync('ldd', [file], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    } catch {
      continue; // statically linked, or not an ELF file
    }
    for (const m of out.matchAll(/(?:=>\s*)?(\/\S+)\s+\(0x/g)) libs.add(m[1]!);
  }
  return [...libs];
}

/** Builds the image and pushes it; returns `<registry>/<repo>@sha256:<digest>`. */
export async function buildPythonCogImage(registry: string, repo = 'test/cog-stand-in'): Promise<string> {
  const py = pythonLayout();
  const root = mkdtempSync(join(tmpdir(), 'python-rootfs-'));
  try {
    const lib = join(root, 'usr', 'lib', `python${py.version}`);
    mkdirSync(join(root, 'usr', 'bin'), { recursive: true });
    mkdirSync(join(root, 'tmp'), { recursive: true });
    copyFileSync(py.exe, join(root, 'usr', 'bin', `python${py.version}`));
    symlinkSync(`python${py.version}`, join(root, 'usr', 'bin', 'python3'));
    symlinkSync(`python${py.version}`, join(root, 'usr', 'bin', 'python'));
    // Python finds its standard library from its own location: /usr/bin → /usr/lib/pythonX.Y.
    cpSync(py.stdlib, lib, { recursive: true, dereference: true, filter: (src) => !SKIP.has(basename(src)) });
    const dynloadTarget = join(lib, 'lib-dynload');
    if (py.dynload && !py.dynload.startsWith(py.stdlib)) cpSync(py.dynload, dynloadTarget, { recursive: true, dereference: true });
    const modules = existsSync(dynloadTarget) ? readdirSync(dynloadTarget).map((f) => join(dynloadTarget, f)) : [];
    for (const libFile of sharedLibraries([py.exe, ...modules])) {
      const target = join(root, libFile);
      mkdirSync(dirname(target), { recursive: true });
      copyFileSync(libFile, target);
    }
    cpSync(COG_PACKAGE, join(lib, 'cog'), { recursive: true, filter: (src) => basename(src) !== '__pycache__' });

    const tag = `${registry}/${repo}:latest`;
    await importRootfs(root, tag);
    execFileSync('docker', ['push', '-q', tag], { stdio: ['ignore', 'pipe', 'pipe'] });
    const digest = execFileSync('docker', ['inspect', '--format', '{{index .RepoDigests 0}}', tag], { encoding: 'utf8' }).trim();
    return `${registry}/${repo}@${digest.split('@')[1]}`;
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

function importRootfs(root: string, tag: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const tar = spawn('tar', ['-C', root, '-c', '.'], { stdio: ['ignore', 'pipe', 'inherit'] });
    const imp = spawn('docker', ['import', '-', tag], { stdio: ['pipe', 'ignore', 'inherit'] });
    tar.stdout.pipe(imp.stdin);
    imp.on('error', reject);
    imp.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`docker import exited with ${code}`))));
  });
}

/** Whether a docker engine answers; in CI its absence is a failure, elsewhere a printed skip. */
export function dockerEngine(what: string): boolean {
  try {
    execFileSync('docker', ['version', '--format', '{{.Server.Version}}'], { stdio: 'ignore', timeout: 10_000 });
    return true;
  } catch {
    if (process.env.CI) throw new Error(`CI must provide a docker engine (DOCKER_HOST) for ${what}`);
    console.warn(`skipping ${what}: no docker engine reachable (set DOCKER_HOST)`);
    return false;
  }
}
