// E2B's JavaScript SDKs, unmodified, against fleetd's E2B front (tests/e2b_sdk.py): a scenario
// by name (argv[2]), with the E2B_* variables of the environment; its findings as one JSON line.
import { Sandbox as CodeSandbox } from "@e2b/code-interpreter";
import { Sandbox } from "e2b";

const scenarios = {
  async basics() {
    const sbx = await Sandbox.create({ metadata: { suite: "js" } });
    await sbx.files.write("from-node.txt", "written by node");
    const read = await sbx.files.read("from-node.txt");
    const code = await CodeSandbox.connect(sbx.sandboxId);
    const run = await code.runCode("40 + 2");
    const png = await code.runCode(
      "import io\nfrom PIL import Image as I\nfrom IPython.display import Image\n" +
        "b = io.BytesIO(); I.new('RGB', (4, 4), 'red').save(b, 'PNG')\nImage(data=b.getvalue())",
    );
    const cmd = await sbx.commands.run("echo from-node; echo to-err >&2");
    let failed;
    try {
      await sbx.commands.run("exit 5");
    } catch (e) {
      failed = e.exitCode;
    }
    const typed = [];
    const term = await sbx.pty.create({
      cols: 80,
      rows: 24,
      onData: (d) => typed.push(new TextDecoder().decode(d)),
    });
    await sbx.pty.sendInput(term.pid, new TextEncoder().encode("echo pty-$((6*7)); exit\n"));
    await term.wait();
    const paused = await Sandbox.pause(sbx.sandboxId);
    const back = await Sandbox.connect(sbx.sandboxId);
    const kept = await back.files.read("from-node.txt");
    const killed = await Sandbox.kill(sbx.sandboxId);
    return {
      read,
      text: run.text,
      png: Boolean(png.results[0]?.png),
      command: [cmd.stdout, cmd.stderr, failed],
      pty: typed.join("").includes("pty-42"),
      paused,
      kept,
      killed,
    };
  },
};

const name = process.argv[2];
if (!(name in scenarios)) {
  console.error(`no scenario ${name}: ${Object.keys(scenarios).join(", ")}`);
  process.exit(2);
}
console.log(JSON.stringify(await scenarios[name]()));
