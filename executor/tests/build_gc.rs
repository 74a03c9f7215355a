//! Garbage collection of built images, against a real engine. Its own test binary: it removes `ouro-build`
//! images beyond a small limit, which would race the cache checks of the other build tests.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{
    CreateContainerOptions, ListImagesOptionsBuilder, RemoveContainerOptionsBuilder, RemoveImageOptionsBuilder,
};
use ouro_executor::build::LABEL_BUILD_KEY;
use ouro_executor::config::BuildSettings;
use tokio::sync::watch;

#[tokio::test]
async fn only_the_most_recently_used_built_images_are_kept() {
    let Some(docker) = common::engine_or_skip("build_gc").await else { return };
    let runner = common::runner(docker.clone(), common::API_TIMEOUT)
        .with_build_settings(BuildSettings { network: "none".into(), cache_images: 1 });
    let nonce = common::job_id("gc");
    let build = |n: u32| {
        let dockerfile = format!("FROM ouro-ubuntu\nRUN echo {nonce}-{n} > /n\nCMD [\"cat\", \"/n\"]\n");
        common::workspace_job(&format!("gc{n}"), "ouro-ubuntu", vec![common::file("Dockerfile", dockerfile)], None)
    };
    let mut tags = Vec::new();
    let mut holder = None;
    for n in 0..4 {
        let (_abort_tx, abort_rx) = watch::channel(false);
        let report = runner.run(&build(n), Duration::from_secs(120), abort_rx, || {}).await;
        assert_eq!(report.outcome.output, format!("{nonce}-{n}\n"), "{:?}", report.outcome);
        let tag = report.build.expect("built").tag;
        if n == 0 {
            // A container (created, never started) holds the first image: it must survive every collection.
            let body = ContainerCreateBody { image: Some(tag.clone()), ..Default::default() };
            let created = docker.create_container(None::<CreateContainerOptions>, body).await;
            holder = Some(created.expect("a container from the first image").id);
        }
        tags.push(tag);
    }

    let exists = |tag: String| {
        let docker = docker.clone();
        async move { docker.inspect_image(&tag).await.is_ok() }
    };
    assert!(exists(tags[0].clone()).await, "in use by a container: kept");
    assert!(!exists(tags[1].clone()).await, "least recently used: removed");
    assert!(!exists(tags[2].clone()).await, "least recently used: removed");
    assert!(exists(tags[3].clone()).await, "just built: kept");
    let filters = HashMap::from([("label", vec![LABEL_BUILD_KEY])]);
    let left = docker.list_images(Some(ListImagesOptionsBuilder::new().filters(&filters).build())).await;
    assert!(left.map(|l| l.len()).unwrap_or(0) <= 2, "at most the limit plus the one in use");

    if let Some(id) = holder {
        let _ = docker.remove_container(&id, Some(RemoveContainerOptionsBuilder::new().force(true).build())).await;
    }
    for tag in [&tags[0], &tags[3]] {
        let _ = docker.remove_image(tag, Some(RemoveImageOptionsBuilder::new().build()), None).await;
    }
}
