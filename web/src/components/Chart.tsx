import { BarChart, LineChart } from 'echarts/charts'
import { GridComponent, LegendComponent, TooltipComponent } from 'echarts/components'
import * as echarts from 'echarts/core'
import { CanvasRenderer } from 'echarts/renderers'
import { createEffect, onCleanup, onMount } from 'solid-js'

echarts.use([BarChart, LineChart, GridComponent, TooltipComponent, LegendComponent, CanvasRenderer])

export type ChartOption = echarts.EChartsCoreOption

/** An ECharts canvas that redraws whenever `option` changes and follows the window's size. */
export function Chart(props: {
  option: ChartOption | undefined
  label: string
  height?: number
  points?: number
}) {
  let el: HTMLDivElement | undefined
  let chart: echarts.ECharts | undefined
  onMount(() => {
    if (el === undefined) return
    chart = echarts.init(el)
    const resize = () => chart?.resize()
    window.addEventListener('resize', resize)
    onCleanup(() => {
      window.removeEventListener('resize', resize)
      chart?.dispose()
    })
  })
  createEffect(() => {
    const option = props.option
    if (chart !== undefined && option) chart.setOption(option, { notMerge: true })
  })
  return (
    <div
      ref={el}
      class="chart"
      role="img"
      aria-label={props.label}
      data-points={props.points ?? 0}
      style={{ height: `${props.height ?? 320}px` }}
    />
  )
}
