//! Embeds the default model (assets/default-model) in the binary when it is present, so that
//! `gliznet predict` works with no `--model` and no files beside the binary.
//! `GLIZNET_NO_BUILTIN_MODEL=1` builds without it (a smaller binary that needs `--model`).

fn main() {
    println!("cargo::rustc-check-cfg=cfg(gliznet_builtin_model)");
    println!("cargo::rerun-if-changed=assets/default-model");
    println!("cargo::rerun-if-env-changed=GLIZNET_NO_BUILTIN_MODEL");
    if std::env::var("GLIZNET_NO_BUILTIN_MODEL").is_ok_and(|v| v == "1") {
        return;
    }
    let dir = std::path::Path::new("assets/default-model");
    let complete = ["config.json", "model.safetensors", "tokenizer.json"]
        .iter()
        .all(|f| dir.join(f).is_file());
    if complete {
        println!("cargo::rustc-cfg=gliznet_builtin_model");
    }
}
