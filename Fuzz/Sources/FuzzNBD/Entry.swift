/// The process entry point.
///
/// SwiftPM links an executable target with its `main` aliased to `FuzzNBD_main`, a symbol that
/// `-parse-as-library` never emits, so linking would fail; defining it here and handing control
/// to libFuzzer's driver gives the usual libFuzzer command line.
@_silgen_name("LLVMFuzzerRunDriver")
func runFuzzerDriver(
    _ argc: UnsafeMutablePointer<CInt>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ testOneInput: @convention(c) (UnsafePointer<UInt8>, Int) -> CInt
) -> CInt

@_cdecl("FuzzNBD_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var count = argc
    var arguments = argv
    return runFuzzerDriver(&count, &arguments) { data, size in fuzzNBD(data, size) }
}
