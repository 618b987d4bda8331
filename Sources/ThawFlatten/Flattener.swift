import Crypto
public import ThawExt4
public import ThawImage
public import ThawTar

/// Where flattening stands, for a progress display.
public struct FlattenProgress: Sendable {
    public var layer: Int
    public var layerCount: Int
    /// Uncompressed bytes of this layer read so far.
    public var bytesRead: UInt64
}

/// Where a flatten puts the image: a file (`flatten(_:to:)`), or a push that seals chunks as
/// they fill. File data arrives in order, region by region; metadata arrives last, through
/// `BlockSink.write(_:at:)`, into the first chunk and the tail after the last region.
public protocol FlattenOutput: BlockSink {
    /// Moves the data append position to `offset`: block aligned and never backwards.
    func seek(to offset: UInt64) throws
    /// Appends a regular file's content from `reader`, zero-padded to whole blocks.
    /// - Returns: the bytes of content read.
    func appendContent(of reader: TarReader, size: UInt64) throws -> UInt64
    /// A region laid out from a layer index, whose bytes the output already has: nothing is
    /// written for it, and data appends continue after it.
    func skipRegion(at offset: UInt64, length: UInt64) throws
    /// Every byte is written; the image is `size` bytes long.
    func commit(size: UInt64) throws
}

/// A layer laid out from its index (`LayerIndex`) without being read.
public struct IndexedLayer: Sendable {
    public var diffID: ThawImage.Digest
    /// How errors name the layer.
    public var label: String
    public var index: LayerIndex

    public init(diffID: ThawImage.Digest, label: String, index: LayerIndex) {
        self.diffID = diffID
        self.label = label
        self.index = index
    }
}

/// What a flatten produced.
public struct FlattenSummary: Sendable {
    /// A layer's region: chunk-aligned, holding every regular file of that layer in tar order.
    public struct Region: Sendable, Equatable {
        public var layer: Int
        public var diffID: ThawImage.Digest
        /// Byte offset of the region in the image; a multiple of the chunk size.
        public var offset: UInt64
        /// Bytes of file data, padded to whole blocks.
        public var length: UInt64
        /// Laid out from a known layer index; the layer was not read.
        public var reused: Bool = false
    }

    struct Totals {
        var uncompressed: UInt64 = 0
        var entries = 0
        var regularFiles = 0
        var fileBytes: UInt64 = 0
    }

    public var configDigest: ThawImage.Digest
    public var layerCount: Int
    public var uncompressedBytes: UInt64
    public var entries: Int
    public var regularFiles: Int
    public var fileBytes: UInt64
    public var regions: [Region]
    public var filesystem: Ext4Summary
    public var chunkSize: UInt64
    /// For each layer, its index when it was read and indexes were asked for.
    public var layerIndexes: [LayerIndex?] = []
    public var imageSize: UInt64 { filesystem.imageSize }
}

/// Turns an OCI image into one ext4 filesystem image, deterministically and in one pass over
/// the layers, never holding file content in memory.
///
/// Each layer's regular files are written, in tar order and block aligned, to a region of its
/// own that starts on a chunk boundary; a region is thus a function of its layer alone, and
/// images sharing a layer share that region's chunks. Files that later layers delete stay in
/// their region, unreferenced. The filesystem metadata follows the last region (see
/// `Ext4Writer`). UUID and hash seed derive from the image config digest; no clock is read.
public struct Flattener {
    public var chunkSize: UInt64
    /// Called from the flattening thread every few megabytes.
    public var progress: ((FlattenProgress) -> Void)?

    public static let defaultChunkSize: UInt64 = 512 * 1024

    public init(chunkSize: UInt64 = Flattener.defaultChunkSize, progress: ((FlattenProgress) -> Void)? = nil) {
        self.chunkSize = chunkSize
        self.progress = progress
    }

    /// Flattens `image` into an ext4 image at `destination`, replacing it only on success.
    public func flatten(_ image: Image, to destination: String) throws -> FlattenSummary {
        try checkChunkSize()
        let output = try OutputImage(destination: destination)
        return try flatten(image, into: output)
    }

    /// Flattens `image` into `output`.
    ///
    /// - Parameters:
    ///   - knownLayer: an index for a layer whose region the output already has (an incremental
    ///     push); that layer is laid out from the index and never opened.
    ///   - recordIndexes: whether to return an index for every layer that was read.
    public func flatten(_ image: Image, into output: some FlattenOutput,
                        knownLayer: (ImageLayer) -> LayerIndex? = { _ in nil },
                        recordIndexes: Bool = false) throws -> FlattenSummary {
        let sources = image.layers.map { layer in
            knownLayer(layer).map { LayerSource.known(IndexedLayer(diffID: layer.diffID, label: layer.label, index: $0)) }
                ?? .read(layer)
        }
        return try layOut(configDigest: image.configDigest, sources: sources, image: image, output: output,
                          recordIndexes: recordIndexes, hot: [], hotSource: nil)
    }

    /// Lays an image out again from the indexes of all its layers, reading none, with a hot
    /// region holding `hot` in that order (see `HotPlacement`): the relayout of a pushed image
    /// after a recorded start. Regions come out exactly as before, so the output keeps their
    /// chunks; the hot region and the metadata tail are new.
    ///
    /// - Parameter hotSource: the file blocks the hot region copies, at their place in the regions.
    public func relayout(configDigest: ThawImage.Digest, layers: [IndexedLayer], hot: [ContentBlock],
                         hotSource: any HotBlockSource, into output: some FlattenOutput) throws -> FlattenSummary {
        try layOut(configDigest: configDigest, sources: layers.map { .known($0) }, image: nil, output: output,
                   recordIndexes: false, hot: hot, hotSource: hotSource)
    }

    /// Where every block of such a layout lies, without writing anything: for translating an
    /// access record of one layout into the content blocks it read.
    public func layout(configDigest: ThawImage.Digest, layers: [IndexedLayer], hot: [ContentBlock]) throws -> Ext4Layout {
        try checkChunkSize()
        var tree = LayerTree()
        var totals = FlattenSummary.Totals()
        var cursor = Ext4Writer.firstDataBlock(chunkSize: chunkSize)
        let chunkBlocks = chunkSize / UInt64(Ext4Writer.blockSize)
        for (position, layer) in layers.enumerated() {
            tree.layer = position
            cursor = (cursor + chunkBlocks - 1) / chunkBlocks * chunkBlocks
            try replay(layer.index, label: layer.label, regionStart: cursor, into: &tree, totals: &totals)
            cursor += layer.index.regionLength / UInt64(Ext4Writer.blockSize)
        }
        let dataEnd = (cursor + chunkBlocks - 1) / chunkBlocks * chunkBlocks
        do {
            return try Ext4Writer.layout(root: tree.root, dataEnd: dataEnd, parameters: parameters(configDigest), hot: hot)
        } catch let error as Ext4Error {
            throw FlattenError(error.message)
        }
    }

    /// A layer as the flattener takes it: read from the image, or replayed from its index.
    private enum LayerSource {
        case read(ImageLayer)
        case known(IndexedLayer)
    }

    private func parameters(_ configDigest: ThawImage.Digest) -> Ext4Parameters {
        Ext4Parameters(
            chunkSize: chunkSize,
            uuid: Self.derive("thaw.ext4.uuid", configDigest, uuid: true),
            hashSeed: Self.derive("thaw.ext4.hash-seed", configDigest, uuid: false))
    }

    private func layOut(configDigest: ThawImage.Digest, sources: [LayerSource], image: Image?, output: some FlattenOutput,
                        recordIndexes: Bool, hot: [ContentBlock], hotSource: (any HotBlockSource)?) throws -> FlattenSummary {
        try checkChunkSize()
        let blockSize = UInt64(Ext4Writer.blockSize)
        let chunkBlocks = chunkSize / blockSize
        var tree = LayerTree()
        var cursor = Ext4Writer.firstDataBlock(chunkSize: chunkSize)
        var regions: [FlattenSummary.Region] = []
        var indexes: [LayerIndex?] = []
        var totals = FlattenSummary.Totals()

        for (position, source) in sources.enumerated() {
            tree.layer = position
            cursor = (cursor + chunkBlocks - 1) / chunkBlocks * chunkBlocks
            let regionStart = cursor
            let index: LayerIndex?
            let diffID: ThawImage.Digest
            switch source {
            case .known(let known):
                try replay(known.index, label: known.label, regionStart: regionStart, into: &tree, totals: &totals)
                try output.skipRegion(at: regionStart * blockSize, length: known.index.regionLength)
                cursor += known.index.regionLength / blockSize
                index = nil
                diffID = known.diffID
            case .read(let layer):
                guard let image else { preconditionFailure("a layer to read needs its image") }
                try output.seek(to: cursor * blockSize)
                index = try read(layer, of: image, regionStart: regionStart, cursor: &cursor, into: &tree, output: output,
                                 recording: recordIndexes, totals: &totals)
                diffID = layer.diffID
            }
            var region = FlattenSummary.Region(layer: position, diffID: diffID, offset: regionStart * blockSize,
                                               length: (cursor - regionStart) * blockSize)
            if case .known = source { region.reused = true }
            indexes.append(index)
            regions.append(region)
        }

        let dataEnd = (cursor + chunkBlocks - 1) / chunkBlocks * chunkBlocks
        let filesystem: Ext4Summary
        do {
            filesystem = try Ext4Writer.write(root: tree.root, dataEnd: dataEnd, parameters: parameters(configDigest),
                                              hot: hot, hotSource: hotSource, to: output)
        } catch let error as Ext4Error {
            throw FlattenError(error.message)
        }
        try output.commit(size: filesystem.imageSize)
        return FlattenSummary(
            configDigest: configDigest, layerCount: sources.count, uncompressedBytes: totals.uncompressed,
            entries: totals.entries, regularFiles: totals.regularFiles, fileBytes: totals.fileBytes, regions: regions,
            filesystem: filesystem, chunkSize: chunkSize, layerIndexes: indexes)
    }

    private func checkChunkSize() throws {
        guard chunkSize >= UInt64(Ext4Writer.blockSize), chunkSize.nonzeroBitCount == 1, chunkSize <= 64 << 20 else {
            throw FlattenError("chunk size \(chunkSize) must be a power of two from 4 KiB to 64 MiB")
        }
    }

    /// Streams one layer: file data to the output, entries to the tree.
    private func read(_ layer: ImageLayer, of image: Image, regionStart: UInt64, cursor: inout UInt64,
                      into tree: inout LayerTree, output: some FlattenOutput, recording: Bool,
                      totals: inout FlattenSummary.Totals) throws -> LayerIndex? {
        let blockSize = UInt64(Ext4Writer.blockSize)
        var recorded: [LayerIndex.Entry] = []
        var lastReport: UInt64 = 0
        var entryPath: String?
        do {
            let stream = try image.openLayer(layer)
            let reader = TarReader(source: stream)
            while let entry = try reader.nextEntry() {
                entryPath = entry.displayPath
                totals.entries += 1
                let components = try ImagePath.components(entry.path)
                var runs: [BlockRun] = []
                let dataBlock = cursor - regionStart
                if entry.kind == .regular {
                    let blocks = (entry.size + blockSize - 1) / blockSize
                    guard cursor + blocks < UInt64(UInt32.max) - (1 << 20) else {
                        throw FlattenError("file of \(entry.size) bytes does not fit in an ext4 image of 16 TiB")
                    }
                    if blocks > 0 { runs = [BlockRun(start: cursor, count: blocks)] }
                    totals.fileBytes += try output.appendContent(of: reader, size: entry.size)
                    cursor += blocks
                    totals.regularFiles += 1
                }
                try tree.apply(entry, components: components, dataRuns: runs)
                if recording { recorded.append(LayerIndex.Entry(entry: entry, dataBlock: dataBlock)) }
                if let progress, stream.uncompressedCount - lastReport >= 8 << 20 {
                    lastReport = stream.uncompressedCount
                    progress(FlattenProgress(layer: layer.index, layerCount: image.layers.count, bytesRead: lastReport))
                }
            }
            entryPath = nil
            let uncompressed = try stream.finish()
            totals.uncompressed += uncompressed
            guard recording else { return nil }
            return LayerIndex(regionLength: (cursor - regionStart) * blockSize, uncompressedBytes: uncompressed, entries: recorded)
        } catch var error as FlattenError {
            error.layer = layer.label
            error.entry = error.entry ?? entryPath
            throw error
        } catch let error as TarError {
            throw FlattenError(error.message, layer: layer.label, entry: error.entry ?? entryPath)
        } catch var error as ImageError {
            error.layer = layer.label
            throw FlattenError(error.message, layer: layer.label, entry: nil)
        } catch let error as Ext4Error {
            throw FlattenError(error.message, layer: layer.label, entry: entryPath)
        }
    }

    /// Applies a layer from its index, exactly as reading it would.
    private func replay(_ index: LayerIndex, label: String, regionStart: UInt64, into tree: inout LayerTree,
                        totals: inout FlattenSummary.Totals) throws {
        let blockSize = UInt64(Ext4Writer.blockSize)
        guard index.regionLength % blockSize == 0 else {
            throw FlattenError("the index of this layer has a region of \(index.regionLength) bytes, not whole blocks", layer: label)
        }
        let regionBlocks = index.regionLength / blockSize
        for item in index.entries {
            let entry = item.entry
            do {
                totals.entries += 1
                let components = try ImagePath.components(entry.path)
                var runs: [BlockRun] = []
                if entry.kind == .regular {
                    let blocks = (entry.size + blockSize - 1) / blockSize
                    guard item.dataBlock <= regionBlocks, blocks <= regionBlocks - item.dataBlock else {
                        throw FlattenError("the layer index places this file outside its region")
                    }
                    if blocks > 0 { runs = [BlockRun(start: regionStart + item.dataBlock, count: blocks)] }
                    totals.fileBytes += entry.size
                    totals.regularFiles += 1
                }
                try tree.apply(entry, components: components, dataRuns: runs)
            } catch var error as FlattenError {
                error.layer = label
                error.entry = error.entry ?? entry.displayPath
                throw error
            }
        }
        totals.uncompressed += index.uncompressedBytes
    }

    /// 16 bytes derived from the image identity; as a UUID, marked version 8 (custom), RFC 9562 variant.
    static func derive(_ label: String, _ digest: ThawImage.Digest, uuid: Bool) -> [UInt8] {
        var bytes = Array(SHA256.hash(data: Array(label.utf8) + [0] + digest.bytes).prefix(16))
        if uuid {
            bytes[6] = (bytes[6] & 0x0f) | 0x80
            bytes[8] = (bytes[8] & 0x3f) | 0x80
        }
        return bytes
    }
}
