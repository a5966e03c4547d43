//! The contracts between Outpost's processes: generated gRPC clients, servers and messages
//! for every service, and the descriptor set that reflection and the gateway read.

/// Encoded `FileDescriptorSet` of every Outpost proto and its imports (with `google.api.http`).
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/outpost_descriptor.bin"));

/// `outpost.ingest.v1`: ingest runs and sources.
pub mod ingest {
    #[allow(missing_docs, clippy::all)]
    pub mod v1 {
        tonic::include_proto!("outpost.ingest.v1");
    }
}

/// `outpost.media.v1`: images, reviews and stored objects.
pub mod media {
    #[allow(missing_docs, clippy::all)]
    pub mod v1 {
        tonic::include_proto!("outpost.media.v1");
    }
}

/// `outpost.telemetry.v1`: devices, sensors, readings, tracks and waypoints.
pub mod telemetry {
    #[allow(missing_docs, clippy::all)]
    pub mod v1 {
        tonic::include_proto!("outpost.telemetry.v1");
    }
}

/// `outpost.plotting.v1`: plot jobs and their plots.
pub mod plotting {
    #[allow(missing_docs, clippy::all)]
    pub mod v1 {
        tonic::include_proto!("outpost.plotting.v1");
    }
}

/// `google.api`: HTTP annotations (descriptor only; the gateway reads them dynamically).
pub mod google {
    /// `google.api`.
    #[allow(missing_docs, clippy::all)]
    pub mod api {
        tonic::include_proto!("google.api");
    }
}

/// Full gRPC service names, as health and reflection report them.
pub mod names {
    /// The ingest service.
    pub const INGEST: &str = "outpost.ingest.v1.IngestService";
    /// The media service.
    pub const MEDIA: &str = "outpost.media.v1.MediaService";
    /// The telemetry service.
    pub const TELEMETRY: &str = "outpost.telemetry.v1.TelemetryService";
    /// The plotting service.
    pub const PLOTTING: &str = "outpost.plotting.v1.PlottingService";
}
