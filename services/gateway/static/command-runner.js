// The Machine detail page's command runner: argv straight to the daemon (machines.execStream,
// its output shown as it is produced); no shell on the way.
import { METHODS } from "./contract.js";
import { rpcStream } from "./rpc-stream.js";
import { busy, chip, errorBox, field, fill, h, parseArgv } from "./ui.js";

const DEFAULT_TIMEOUT_S = 30;
const MAX_TIMEOUT_S = 600;

function result(r) {
  return [
    h(
      "div.exec-meta",
      {},
      "exit code ",
      chip(String(r.exitCode), r.exitCode === 0 ? "ready" : "failed", "exec-exit-code"),
      r.timedOut ? chip("timed out", "unresponsive") : null,
      r.truncated ? chip("output truncated", "unresponsive") : null,
    ),
    h("h3", {}, "stdout"),
    h("pre.output", { testid: "exec-stdout" }, r.stdout),
    ...(r.stderr
      ? [h("h3", {}, "stderr"), h("pre.output.stderr", { testid: "exec-stderr" }, r.stderr)]
      : []),
  ];
}

/** The runner's form for machine `machineId`. */
export function commandRunner(machineId) {
  const cmd = h("input.mono", {
    testid: "exec-command",
    placeholder: "e.g. ls -la .fleet",
    autocomplete: "off",
    spellcheck: "false",
    required: true,
  });
  const cwd = h("input.mono", { testid: "exec-cwd", placeholder: "home directory" });
  const timeout = h("input", {
    testid: "exec-timeout",
    type: "number",
    min: "1",
    max: String(MAX_TIMEOUT_S),
    value: String(DEFAULT_TIMEOUT_S),
  });
  const argvPreview = h("code.mono.argv", { testid: "exec-argv" }, "[]");
  const run = h("button.btn.btn-primary", { type: "submit", testid: "exec-run" }, "Run");
  const output = h("div.exec-output", { "aria-live": "polite", testid: "exec-output" });
  cmd.addEventListener("input", () => {
    try {
      argvPreview.textContent = JSON.stringify(parseArgv(cmd.value));
    } catch (err) {
      argvPreview.textContent = err.message;
    }
  });
  const runner = h(
    "form.runner",
    { "aria-label": "Run a command" },
    h(
      "div.runner-row",
      {},
      field("Command (argv; quotes group words, nothing is expanded)", cmd),
      field("Working directory", cwd),
      field("Timeout (s)", timeout),
      run,
    ),
    h("div.muted", {}, "argv: ", argvPreview),
    output,
  );
  runner.addEventListener("submit", (e) => {
    e.preventDefault();
    busy(run, async () => {
      let argv;
      try {
        argv = parseArgv(cmd.value);
      } catch (err) {
        fill(output, errorBox(err));
        return;
      }
      if (!argv.length) return;
      const params = {
        machineId,
        command: argv,
        timeoutS: Number(timeout.value) || DEFAULT_TIMEOUT_S,
      };
      if (cwd.value.trim()) params.cwd = cwd.value.trim();
      const live = {
        stdout: h("pre.output", { testid: "exec-live-stdout" }),
        stderr: h("pre.output.stderr", { testid: "exec-live-stderr" }),
      };
      fill(
        output,
        h("div.muted", { testid: "exec-running" }, "Running…"),
        live.stdout,
        live.stderr,
      );
      const onChunk = (c) => live[c.stream === "stderr" ? "stderr" : "stdout"].append(c.data);
      try {
        fill(output, ...result(await rpcStream(METHODS.MACHINES_EXEC_STREAM, params, onChunk)));
      } catch (err) {
        fill(output, errorBox(err, "exec-error"));
      }
    });
  });
  return runner;
}
