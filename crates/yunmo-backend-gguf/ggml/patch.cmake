# Compiles Yunmo's flash-attention kernel (yunmo_flash_attn.h) into llama.cpp's CPU backend.
#
# llama-cpp-sys-2 builds llama.cpp from the sources in its crate and passes every CMAKE_* variable of the
# environment to CMake; .cargo/config.toml sets CMAKE_PROJECT_ggml_INCLUDE to this file, which CMake runs right
# after ggml's project() call. At the end of ggml's directory, the ggml-cpu target's ops.cpp is replaced by a
# copy in the build folder with one hook: llama.cpp's f16 flash attention first offers the op to Yunmo's
# kernel, which takes the cases it covers and returns false for the rest. The registry's sources are never
# modified. If llama.cpp changes so that the hook's anchor is gone, the build stops here with a message,
# never silently without the kernel.
if(CMAKE_VERSION VERSION_LESS 3.21)
    message(FATAL_ERROR "Yunmo: building llama.cpp with its flash-attention kernel needs CMake 3.21 or later")
endif()

# Patches one CPU backend target (ggml-cpu, or each ggml-cpu-<variant> of GGML_CPU_ALL_VARIANTS builds) whose
# sources hold ggml-cpu/ops.cpp; returns whether it did.
function(yunmo_patch_target target kernel patched_out)
    get_target_property(sources ${target} SOURCES)
    get_target_property(source_dir ${target} SOURCE_DIR)
    set(original "")
    set(patched_sources "")
    set(patched "${CMAKE_BINARY_DIR}/yunmo-ggml-cpu/ops.cpp")
    foreach(source IN LISTS sources)
        if(source MATCHES "(^|/)ggml-cpu/ops\\.cpp$")
            set(original "${source}")
            if(NOT IS_ABSOLUTE "${original}")
                set(original "${source_dir}/${source}")
            endif()
            list(APPEND patched_sources "${patched}")
        else()
            list(APPEND patched_sources "${source}")
        endif()
    endforeach()
    if(original STREQUAL "")
        set(${patched_out} FALSE PARENT_SCOPE)
        return()
    endif()
    file(READ "${original}" text)
    set(anchor "static void ggml_compute_forward_flash_attn_ext_f16(\n        const ggml_compute_params * params,\n        ggml_tensor * dst) {\n")
    string(FIND "${text}" "${anchor}" at)
    if(at EQUAL -1)
        message(FATAL_ERROR "Yunmo: llama.cpp's ggml_compute_forward_flash_attn_ext_f16 changed; its hook for ${kernel} no longer applies")
    endif()
    string(REPLACE "${anchor}"
        "#include \"${kernel}\"\n\n${anchor}    if (yunmo_flash_attn_ext_f16(params, dst)) {\n        return;\n    }\n"
        text "${text}")
    # Written only when it changed, so that a CMake re-run does not recompile ggml-cpu.
    file(WRITE "${patched}.new" "${text}")
    file(COPY_FILE "${patched}.new" "${patched}" ONLY_IF_DIFFERENT)
    set_property(TARGET ${target} PROPERTY SOURCES "${patched_sources}")
    # The copy includes ops.cpp's neighbours ("ops.h", "vec.h", ...) from the original folder.
    get_filename_component(original_dir "${original}" DIRECTORY)
    target_include_directories(${target} PRIVATE "${original_dir}")
    set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS "${original}" "${kernel}")
    message(STATUS "Yunmo: ${target} compiles ${patched} with the flash-attention kernel ${kernel}")
    set(${patched_out} TRUE PARENT_SCOPE)
endfunction()

function(yunmo_patch_ggml_cpu)
    set(kernel "${CMAKE_CURRENT_FUNCTION_LIST_DIR}/yunmo_flash_attn.h")
    get_property(targets DIRECTORY "${CMAKE_CURRENT_SOURCE_DIR}/src" PROPERTY BUILDSYSTEM_TARGETS)
    set(count 0)
    foreach(target IN LISTS targets)
        if(target MATCHES "^ggml-cpu(-.+)?$")
            yunmo_patch_target(${target} "${kernel}" patched)
            if(patched)
                math(EXPR count "${count} + 1")
            endif()
        endif()
    endforeach()
    if(count EQUAL 0)
        message(FATAL_ERROR "Yunmo: no ggml-cpu target of llama.cpp's build compiles ggml-cpu/ops.cpp; update ${kernel} and this file")
    endif()
endfunction()

cmake_language(DEFER DIRECTORY "${CMAKE_CURRENT_SOURCE_DIR}" CALL yunmo_patch_ggml_cpu)
