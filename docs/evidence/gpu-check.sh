set -x
test -x /opt/ff/ffmpeg || { cat /root/ffparts/part.aa .gpu/p2/part.ab > /tmp/ff.tar.xz && mkdir -p /opt/ff && tar -xJf /tmp/ff.tar.xz -C /opt/ff; }
rm -f /opt/ff/lib/libc.so.6 /opt/ff/lib/libm.so.6 /opt/ff/lib/libpthread.so.0 /opt/ff/lib/libdl.so.2 /opt/ff/lib/librt.so.1 /opt/ff/lib/libresolv.so.2
L=/opt/ff/lib:/usr/local/nvidia/lib64:/usr/local/nvidia/lib
FF="env LD_LIBRARY_PATH=$L /opt/ff/ffmpeg"; FP="env LD_LIBRARY_PATH=$L /opt/ff/ffprobe"
nvidia-smi --query-gpu=name,driver_version --format=csv
ls /usr/local/nvidia/lib64 2>/dev/null | grep -E 'nvcuvid|nvidia-encode|libcuda' 
$FF -hide_banner -version | head -1
$FF -hide_banner -hwaccels
cd /tmp
$FF -hide_banner -loglevel error -y -f lavfi -i testsrc2=size=1920x1080:rate=30 -t 20 -c:v libx264 -preset ultrafast -pix_fmt yuv420p in1080.mp4
ls -la in1080.mp4
echo "== CPU decode"; /usr/bin/time -f "%e s" $FF -hide_banner -loglevel error -i in1080.mp4 -f null -
echo "== NVDEC decode (hwaccel cuda)"; /usr/bin/time -f "%e s" $FF -hide_banner -loglevel error -hwaccel cuda -hwaccel_output_format cuda -i in1080.mp4 -f null -
echo "== NVDEC decode + scale_cuda, hwdownload, libx264 encode"; /usr/bin/time -f "%e s" $FF -hide_banner -loglevel error -y -hwaccel cuda -hwaccel_output_format cuda -i in1080.mp4 -vf "scale_cuda=1280:720,hwdownload,format=nv12" -c:v libx264 -preset veryfast out720.mp4; ls -la out720.mp4
echo "== CPU scale + libx264 encode"; /usr/bin/time -f "%e s" $FF -hide_banner -loglevel error -y -i in1080.mp4 -vf scale=1280:720 -c:v libx264 -preset veryfast out720cpu.mp4
echo "== h264_cuvid decoder"; $FF -hide_banner -loglevel error -c:v h264_cuvid -i in1080.mp4 -f null - && echo cuvid-ok
echo "== NVENC (expected to fail on H100: no NVENC engine)"; $FF -hide_banner -loglevel error -y -hwaccel cuda -hwaccel_output_format cuda -i in1080.mp4 -c:v h264_nvenc out-nvenc.mp4; echo "nvenc exit=$?"
$FP -v error -show_entries stream=codec_name,width,height -of csv=p=0 out720.mp4
